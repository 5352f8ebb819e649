// tetherd admin page: the live parts. Presence events arrive on
// /admin/events (server-sent events); everything else is refreshed from
// /admin/status.json every 2 s. Only textContent is ever set: no HTML is
// built from data, nothing is evaluated.
'use strict';
(function () {
  const TIMELINE_KEPT = 50;
  let skew = 0; // the authority's clock minus ours, in seconds

  const $ = (id) => document.getElementById(id);
  const none = '\u2014';

  function show(v) {
    if (v === null || v === undefined || v === '') return none;
    if (Array.isArray(v)) return v.length ? v.join(', ') : none;
    return String(v);
  }

  function get(obj, path) {
    return path.split('.').reduce((o, k) => (o === null || o === undefined ? undefined : o[k]), obj);
  }

  function setState(state) {
    const el = $('dongle-state');
    el.textContent = state;
    el.className = 'state state-' + state;
  }

  function words(secs) {
    secs = Math.max(0, Math.floor(secs));
    const d = Math.floor(secs / 86400);
    const h = Math.floor((secs % 86400) / 3600);
    const m = Math.floor((secs % 3600) / 60);
    const s = secs % 60;
    const parts = [];
    if (d) parts.push(d + 'd');
    if (d || h) parts.push(h + 'h');
    if (d || h || m) parts.push(m + 'm');
    parts.push(s + 's');
    return parts.join(' ');
  }

  function rows(id, items, cells, width) {
    const frag = document.createDocumentFragment();
    for (const item of items) {
      const tr = document.createElement('tr');
      for (const c of cells(item)) {
        const td = document.createElement('td');
        td.textContent = show(c);
        tr.appendChild(td);
      }
      frag.appendChild(tr);
    }
    if (!items.length) {
      const tr = document.createElement('tr');
      const td = document.createElement('td');
      td.colSpan = width;
      td.className = 'muted';
      td.textContent = 'none';
      tr.appendChild(td);
      frag.appendChild(tr);
    }
    $(id).replaceChildren(frag);
  }

  function apply(v) {
    skew = v.now - Date.now() / 1000;
    for (const el of document.querySelectorAll('[data-k]')) {
      el.textContent = show(get(v, el.dataset.k));
    }
    setState(v.dongle.state);
    const ready = $('ready');
    ready.className = v.ready ? 'level-ok' : 'level-bad';
    ready.textContent = v.ready ? 'ready: tokens are issued' : 'not ready: ' + show(v.not_ready);
    $('license-warning').className = 'level-' + v.license.level;
    const seats = Object.entries(v.license.seats).map(([s, n]) => s + ': ' + n);
    $('license-seats').textContent = seats.length ? seats.join(', ') : 'unlimited';
    const cd = $('countdown');
    cd.dataset.notAfter = String(v.license.not_after);
    cd.dataset.graceUntil = String(v.license.grace_until);
    rows('refusals-body', v.dongle.refusals, (r) => [r.at_text, r.reason], 2);
    rows('seats-body', v.seats, (s) => [s.service, s.in_use, s.seats === null ? 'unlimited' : s.seats], 3);
    rows('leases-body', v.leases, (l) => [l.service, l.instance, l.since_text, l.expires_text, l.peer], 5);
    rows('tokens-body', v.tokens, (t) => [t.service, t.issued, t.refused], 3);
    rows('receipts-body', v.license.receipts, (r) => [r.license_id, r.state, r.file, r.counter, r.message], 5);
    countdown();
  }

  function countdown() {
    const cd = $('countdown');
    const now = Date.now() / 1000 + skew;
    const end = Number(cd.dataset.notAfter);
    const grace = Number(cd.dataset.graceUntil);
    if (now < end) {
      cd.textContent = words(end - now);
    } else if (now < grace) {
      cd.textContent = 'expired; grace ends in ' + words(grace - now);
    } else {
      cd.textContent = 'expired ' + words(now - end) + ' ago';
    }
  }

  async function refresh() {
    try {
      const r = await fetch('/admin/status.json', { cache: 'no-store' });
      if (r.ok) apply(await r.json());
    } catch (e) {
      $('live').textContent = 'live updates: authority unreachable';
    }
  }

  function addEvent(ev) {
    const list = $('timeline-list');
    const key = ev.state + '@' + ev.since;
    if (list.firstElementChild && list.firstElementChild.dataset.key === key) return;
    const li = document.createElement('li');
    li.dataset.key = key;
    const time = document.createElement('time');
    time.textContent = ev.since_text;
    const state = document.createElement('span');
    state.className = 'state state-' + ev.state;
    state.textContent = ev.state;
    li.append(time, ' ', state, ' ', ev.reason);
    list.prepend(li);
    while (list.children.length > TIMELINE_KEPT) list.lastElementChild.remove();
  }

  function follow() {
    const es = new EventSource('/admin/events');
    es.addEventListener('open', () => {
      $('live').textContent = 'live updates: on';
    });
    es.addEventListener('error', () => {
      $('live').textContent = 'live updates: reconnecting';
    });
    es.addEventListener('presence', (m) => {
      const ev = JSON.parse(m.data);
      setState(ev.state);
      addEvent(ev);
      refresh();
    });
  }

  document.addEventListener('DOMContentLoaded', () => {
    follow();
    setInterval(refresh, 2000);
    setInterval(countdown, 1000);
    countdown();
  });
})();
