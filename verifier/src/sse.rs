//! Server-sent events as the refresher reads `GET /events`: the WHATWG HTML
//! standard, section 9.2.6 "Interpreting an event stream", parsed by the
//! `eventsource-stream` crate behind a small byte-level front end.
//!
//! The crate parses fields, comments, `event:` names, the BOM and joins
//! multi-line `data:` with `\n`. The front end ([`Framing`]) adds what it
//! lacks, before any of its buffering:
//!
//! - **Byte caps.** The crate buffers a line and an event without bound;
//!   here a line longer than [`MAX_LINE`] bytes or an event (every byte
//!   since the last blank line) longer than [`MAX_EVENT`] bytes ends the
//!   stream with an error instead of growing memory.
//! - **UTF-8 decode with replacement.** The spec decodes the stream with
//!   "UTF-8 decode" (invalid bytes become U+FFFD). The crate keeps invalid
//!   bytes and everything after them in a buffer that then grows forever;
//!   here a character split across chunks is held back until it completes
//!   and invalid bytes are replaced, so the crate only ever sees whole,
//!   valid UTF-8.
//! - **Line endings.** CRLF, lone CR and lone LF all end a line. The crate
//!   accepts all three but waits for the byte after a CR (it could be an
//!   LF), so an event ended by CR CR would wait for the next keep-alive.
//!   Here every ending becomes one LF as it arrives (an LF right after a CR,
//!   even in the next chunk, is dropped), so events dispatch at once.
//!   CR and LF are ASCII and never occur inside a multi-byte UTF-8
//!   character, so this works on bytes.
//! - **The BOM.** The crate panics on a stream that starts with U+FEFF (it
//!   slices one byte off a three-byte character); here the one leading BOM
//!   the spec ignores is dropped before the crate sees the text.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use eventsource_stream::Eventsource as _;
use futures_util::{Stream, StreamExt as _};

/// Longest line accepted, in bytes (after line-ending normalisation).
pub(crate) const MAX_LINE: usize = 64 * 1024;
/// Longest event accepted, in bytes: everything between two blank lines,
/// comments included.
pub(crate) const MAX_EVENT: usize = 64 * 1024;

/// One dispatched event: its type (`message` when the stream names none)
/// and its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SseEvent {
    /// The `event:` field, or `message`.
    pub(crate) event: String,
    /// The `data:` lines joined with `\n`.
    pub(crate) data: String,
}

/// Why an event stream ended with an error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SseError {
    /// A line over [`MAX_LINE`] bytes.
    #[error("event line too long")]
    LineTooLong,
    /// An event over [`MAX_EVENT`] bytes.
    #[error("event too long")]
    EventTooLong,
    /// The transport failed.
    #[error("reading the event stream: {0}")]
    Transport(String),
    /// The parser refused the stream (it accepts any UTF-8, so this
    /// would be a bug in it; reported rather than panicking).
    #[error("event stream parser: {0}")]
    Parser(String),
}

/// The byte-level front end: normalises line endings, decodes UTF-8 with
/// replacement across chunk boundaries, and enforces the caps.
#[derive(Debug, Default)]
struct Framing {
    /// Some text has been passed on (the BOM check is behind us).
    started: bool,
    /// The previous byte was a CR (so an LF now is part of a CRLF).
    after_cr: bool,
    /// Bytes of an incomplete UTF-8 character at the end of the last chunk.
    partial: Vec<u8>,
    /// Bytes on the current line.
    line: usize,
    /// Bytes since the last blank line.
    event: usize,
}

impl Framing {
    /// Turns one chunk into normalised, valid UTF-8 text (possibly empty).
    fn feed(&mut self, chunk: &[u8]) -> Result<String, SseError> {
        let mut bytes = std::mem::take(&mut self.partial);
        bytes.extend_from_slice(chunk);
        let mut text = String::with_capacity(bytes.len());
        let mut rest = &bytes[..];
        loop {
            match std::str::from_utf8(rest) {
                Ok(valid) => {
                    text.push_str(valid);
                    break;
                }
                Err(e) => {
                    let (valid, after) = rest.split_at(e.valid_up_to());
                    // `valid_up_to` bytes are valid UTF-8 by definition.
                    text.push_str(std::str::from_utf8(valid).unwrap_or_default());
                    match e.error_len() {
                        Some(bad) => {
                            text.push(char::REPLACEMENT_CHARACTER);
                            rest = &after[bad..];
                        }
                        None => {
                            // An incomplete character: at most 3 bytes, kept
                            // for the next chunk.
                            self.partial = after.to_vec();
                            break;
                        }
                    }
                }
            }
        }
        let mut out = String::with_capacity(text.len() + 1);
        let mut text = text.as_str();
        if !self.started && !text.is_empty() {
            self.started = true;
            // The spec ignores one leading BOM. The crate would strip it by
            // slicing one byte off a three-byte character, which panics:
            // strip it here, and start the crate's input with an empty line
            // (a no-op at the start of a stream) so that its own BOM check
            // never sees a second one.
            text = text.strip_prefix('\u{feff}').unwrap_or(text);
            out.push('\n');
        }
        for c in text.chars() {
            let after_cr = std::mem::replace(&mut self.after_cr, c == '\r');
            match c {
                '\n' if after_cr => {}
                '\r' | '\n' => {
                    out.push('\n');
                    if self.line == 0 {
                        self.event = 0;
                    }
                    self.line = 0;
                }
                c => {
                    self.line += c.len_utf8();
                    self.event += c.len_utf8();
                    out.push(c);
                    if self.line > MAX_LINE {
                        return Err(SseError::LineTooLong);
                    }
                    if self.event > MAX_EVENT {
                        return Err(SseError::EventTooLong);
                    }
                }
            }
        }
        Ok(out)
    }
}

/// The events of a byte stream. The stream ends after the first error.
pub(crate) fn events<S, E>(bytes: S) -> impl Stream<Item = Result<SseEvent, SseError>>
where
    S: Stream<Item = Result<Bytes, E>>,
    E: std::fmt::Display,
{
    let mut framing = Framing::default();
    let text = bytes.map(move |chunk| match chunk {
        Ok(b) => framing.feed(&b),
        Err(e) => Err(SseError::Transport(e.to_string())),
    });
    Fused {
        inner: Box::pin(text.eventsource()),
        done: false,
    }
}

/// Maps the crate's events and errors to ours, and ends the stream after
/// the first error.
struct Fused<S> {
    inner: Pin<Box<S>>,
    done: bool,
}

impl<S> Stream for Fused<S>
where
    S: Stream<
        Item = Result<eventsource_stream::Event, eventsource_stream::EventStreamError<SseError>>,
    >,
{
    type Item = Result<SseEvent, SseError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        let next = self.inner.as_mut().poll_next(cx);
        Poll::Ready(match std::task::ready!(next) {
            None => None,
            Some(Ok(e)) => Some(Ok(SseEvent {
                event: e.event,
                data: e.data,
            })),
            Some(Err(e)) => {
                self.done = true;
                Some(Err(match e {
                    eventsource_stream::EventStreamError::Transport(e) => e,
                    eventsource_stream::EventStreamError::Utf8(e) => {
                        SseError::Parser(e.to_string())
                    }
                    eventsource_stream::EventStreamError::Parser(e) => {
                        SseError::Parser(e.to_string())
                    }
                }))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// Feeds `chunks` and collects every event and the error, if any.
    async fn parse(chunks: &[&[u8]]) -> (Vec<SseEvent>, Option<SseError>) {
        let owned: Vec<Result<Bytes, std::convert::Infallible>> = chunks
            .iter()
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let mut s = std::pin::pin!(events(futures_util::stream::iter(owned)));
        let mut out = Vec::new();
        while let Some(ev) = s.next().await {
            match ev {
                Ok(e) => out.push(e),
                Err(e) => return (out, Some(e)),
            }
        }
        (out, None)
    }

    /// Every split of `text` into two and three chunks gives `want`.
    async fn at_every_split(text: &[u8], want: &[SseEvent]) {
        let (whole, err) = parse(&[text]).await;
        assert_eq!((whole.as_slice(), err), (want, None), "whole");
        for i in 0..=text.len() {
            let (got, err) = parse(&[&text[..i], &text[i..]]).await;
            assert_eq!((got.as_slice(), err), (want, None), "split at {i}");
            for j in i..=text.len() {
                let (got, err) = parse(&[&text[..i], &text[i..j], &text[j..]]).await;
                assert_eq!((got.as_slice(), err), (want, None), "split at {i}, {j}");
            }
        }
        let bytes: Vec<&[u8]> = text.chunks(1).collect();
        let (got, err) = parse(&bytes).await;
        assert_eq!((got.as_slice(), err), (want, None), "byte by byte");
    }

    fn ev(event: &str, data: &str) -> SseEvent {
        SseEvent {
            event: event.into(),
            data: data.into(),
        }
    }

    #[tokio::test]
    async fn every_line_ending_form() {
        let want = [ev("state", "a"), ev("message", "b")];
        for text in [
            "event: state\ndata: a\n\ndata: b\n\n",
            "event: state\r\ndata: a\r\n\r\ndata: b\r\n\r\n",
            "event: state\rdata: a\r\rdata: b\r\r",
            "event: state\r\ndata: a\r\rdata: b\n\r\n",
        ] {
            at_every_split(text.as_bytes(), &want).await;
        }
    }

    /// An event ended by CR CR is dispatched at once, not when the next
    /// byte (a keep-alive, seconds later) shows the CR is not half a CRLF.
    #[tokio::test]
    async fn an_event_ended_by_cr_is_not_held_back() {
        let (sender, receiver) =
            tokio::sync::mpsc::unbounded_channel::<Result<Bytes, std::convert::Infallible>>();
        let mut s = std::pin::pin!(events(stream_of(receiver)));
        sender.send(Ok(Bytes::from_static(b"data: x\r\r"))).unwrap();
        let got = tokio::time::timeout(std::time::Duration::from_secs(1), s.next())
            .await
            .expect("the event was held back");
        assert_eq!(got, Some(Ok(ev("message", "x"))));
    }

    fn stream_of<T>(mut rx: tokio::sync::mpsc::UnboundedReceiver<T>) -> impl Stream<Item = T> {
        futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
    }

    #[tokio::test]
    async fn a_character_split_across_chunks() {
        // "é" is C3 A9, "€" E2 82 AC, "😀" F0 9F 98 80.
        let text = "data: {\"reason\":\"d\u{e9}branch\u{e9} \u{20ac} \u{1f600}\"}\n\n";
        at_every_split(
            text.as_bytes(),
            &[ev(
                "message",
                "{\"reason\":\"d\u{e9}branch\u{e9} \u{20ac} \u{1f600}\"}",
            )],
        )
        .await;
    }

    #[tokio::test]
    async fn invalid_utf8_becomes_replacement_characters() {
        let (got, err) = parse(&[b"data: a\xffb\xe2\x82\n\n", b"data: c\n\n"]).await;
        assert_eq!(err, None);
        assert_eq!(
            got,
            [ev("message", "a\u{fffd}b\u{fffd}"), ev("message", "c")]
        );
    }

    #[tokio::test]
    async fn multi_line_data_is_joined_with_newlines() {
        at_every_split(
            b"data: one\ndata:two\ndata\ndata:  four\n\n",
            &[ev("message", "one\ntwo\n\n four")],
        )
        .await;
    }

    #[tokio::test]
    async fn comments_names_and_unknown_fields() {
        at_every_split(
            b"\xef\xbb\xbf: keep-alive\n\n:another\nevent: state\nid: 7\nretry: 10\nfoo: bar\ndata: x\n\nevent: ignored\n\ndata: y\n\n",
            &[ev("state", "x"), ev("message", "y")],
        )
        .await;
    }

    /// The spec ignores one leading BOM; a second one is part of the first
    /// field's name (so that field is ignored). Neither may panic.
    #[tokio::test]
    async fn byte_order_marks() {
        at_every_split(b"\xef\xbb\xbfdata: a\n\n", &[ev("message", "a")]).await;
        at_every_split(
            b"\xef\xbb\xbf\xef\xbb\xbfdata: a\n\ndata: b\n\n",
            &[ev("message", "b")],
        )
        .await;
        at_every_split(b"data: \xef\xbb\xbfa\n\n", &[ev("message", "\u{feff}a")]).await;
    }

    #[tokio::test]
    async fn an_unfinished_event_is_not_dispatched() {
        let (got, err) = parse(&[b"data: a\n\ndata: b\n"]).await;
        assert_eq!((got, err), (vec![ev("message", "a")], None));
    }

    #[tokio::test]
    async fn a_long_line_ends_the_stream() {
        let line = vec![b'A'; MAX_LINE + 1];
        let chunks: Vec<&[u8]> = std::iter::once(&b"data:"[..])
            .chain(line.chunks(1000))
            .collect();
        let (got, err) = parse(&chunks).await;
        assert_eq!((got, err), (vec![], Some(SseError::LineTooLong)));
    }

    #[tokio::test]
    async fn a_long_event_ends_the_stream() {
        let line = format!("data:{}\n", "A".repeat(1000));
        let mut chunks = vec![b"data: ok\n\n".to_vec()];
        chunks.extend(std::iter::repeat_n(line.into_bytes(), 70));
        let refs: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
        let (got, err) = parse(&refs).await;
        assert_eq!(
            (got, err),
            (vec![ev("message", "ok")], Some(SseError::EventTooLong))
        );
    }

    #[tokio::test]
    async fn many_small_events_stay_within_the_caps() {
        let one = b"event: state\r\ndata: {\"state\":\"present\"}\r\n\r\n: keep-alive\r\n\r\n";
        let chunks: Vec<&[u8]> = std::iter::repeat_n(&one[..], 5000).collect();
        let (got, err) = parse(&chunks).await;
        assert_eq!((got.len(), err), (5000, None));
    }

    /// Pieces that make streams interesting: every line ending, field
    /// names, comments, a BOM, multi-byte and invalid UTF-8.
    const PIECES: &[&[u8]] = &[
        b"data:",
        b"data: ",
        b"event:",
        b"event: state",
        b": c",
        b"id: 1",
        b"retry: 5",
        b"\r",
        b"\n",
        b"\r\n",
        b"x",
        b" ",
        b"\xef\xbb\xbf",
        b"\xc3\xa9",
        b"\xf0\x9f\x98\x80",
        b"\xff",
        b"\xe2\x82",
        b"{\"state\":\"present\"}",
    ];

    proptest::proptest! {
        /// Whatever the bytes and wherever the chunks split, the events
        /// (and the error, if any) are the same as for one chunk, and
        /// nothing panics.
        #[test]
        fn any_split_gives_the_same_events(
            picks in proptest::collection::vec(0..PIECES.len(), 0..60),
            cuts in proptest::collection::vec(proptest::prelude::any::<usize>(), 0..8),
        ) {
            let bytes: Vec<u8> = picks.iter().flat_map(|&i| PIECES[i].iter().copied()).collect();
            let mut at: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
            at.sort_unstable();
            let mut chunks = Vec::new();
            let mut from = 0;
            for &to in &at {
                chunks.push(&bytes[from..to]);
                from = to;
            }
            chunks.push(&bytes[from..]);
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let whole = rt.block_on(parse(&[&bytes]));
            let split = rt.block_on(parse(&chunks));
            proptest::prop_assert_eq!(whole, split);
        }
    }

    #[tokio::test]
    async fn a_transport_error_ends_the_stream() {
        let chunks: Vec<Result<Bytes, &str>> = vec![
            Ok(Bytes::from_static(b"data: a\n\n")),
            Err("connection reset"),
            Ok(Bytes::from_static(b"data: b\n\n")),
        ];
        let got: Vec<_> = events(futures_util::stream::iter(chunks)).collect().await;
        assert_eq!(
            got,
            [
                Ok(ev("message", "a")),
                Err(SseError::Transport("connection reset".into()))
            ]
        );
    }
}
