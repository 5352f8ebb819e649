#!/usr/bin/env bash
# Schema check of the Kubernetes manifests, no cluster needed: every object
# is validated (strict: unknown fields are errors) against the OpenAPI
# schemas of a pinned Kubernetes release shipped in the pinned PyPI package
# kubernetes-validate, installed once into a cached virtualenv. Then
# cross-references: every ConfigMap/Secret/PVC/Service a manifest names is
# either defined here or documented as created by the operator, and
# kustomization.yaml lists every manifest.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
k8s_version=1.33.0
validator=kubernetes-validate==1.37.0
venv="${XDG_CACHE_HOME:-$HOME/.cache}/tether/k8s-validate-1.37.0"
if [ ! -x "$venv/bin/kubernetes-validate" ]; then
    echo "k8s/check: installing $validator into $venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "$validator"
fi
manifests=()
for f in "$here"/*.yaml; do
    [ "$(basename "$f")" = kustomization.yaml ] || manifests+=("$f")
done
"$venv/bin/kubernetes-validate" --strict -k "$k8s_version" "${manifests[@]}"
"$venv/bin/python" - "$here" <<'PY'
import os, sys, yaml
here = sys.argv[1]
# Created by the operator with kubectl (docs/deploy-vm.md, "Scaling out").
external = {("ConfigMap", "tether-site"), ("Secret", "tether-credentials"),
            ("Secret", "tether-backend"), ("Secret", "tether-muxer")}
defined, wanted, files = set(), set(), []
for name in sorted(os.listdir(here)):
    if not name.endswith(".yaml") or name == "kustomization.yaml":
        continue
    files.append(name)
    for doc in yaml.safe_load_all(open(os.path.join(here, name))):
        if not doc:
            continue
        defined.add((doc["kind"], doc["metadata"]["name"]))
        spec = doc.get("spec", {}).get("template", {}).get("spec", {})
        for v in spec.get("volumes", []):
            if "configMap" in v: wanted.add(("ConfigMap", v["configMap"]["name"], name))
            if "secret" in v: wanted.add(("Secret", v["secret"]["secretName"], name))
            if "persistentVolumeClaim" in v:
                wanted.add(("PersistentVolumeClaim", v["persistentVolumeClaim"]["claimName"], name))
        for c in spec.get("containers", []):
            for e in c.get("env", []):
                url = e.get("value", "")
                if url.startswith("http://") and ".svc" in url:
                    wanted.add(("Service", url.split("//")[1].split(".")[0], name))
errors = [f"{f}: {k} {n} is neither defined here nor created by the operator"
          for k, n, f in sorted(wanted) if (k, n) not in defined | external]
kust = yaml.safe_load(open(os.path.join(here, "kustomization.yaml")))
errors += [f"kustomization.yaml does not list {f}" for f in files if f not in kust["resources"]]
errors += [f"kustomization.yaml lists missing {f}" for f in kust["resources"] if f not in files]
for e in errors:
    print("k8s/check:", e, file=sys.stderr)
if errors:
    sys.exit(1)
print(f"k8s/check: {len(defined)} objects in {len(files)} files valid against Kubernetes schemas; references resolve")
PY
