#!/usr/bin/env bash
# Re-fetch the web UI's libraries into netatlas/ui/vendor/ from the npm registry, at pinned versions.
#   bash scripts/vendor-ui.sh
# Each package is fetched with `npm pack NAME@VERSION` (the registry's tarball, checked by npm
# against its integrity hash); only the browser builds the UI loads are copied, with each
# package's license. netatlas/ui/vendor/VENDOR.json records package, version, the npm integrity
# hash and the files taken. The result is committed: the server never fetches anything at run
# time, and `pip install .` needs no npm.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

DEST=netatlas/ui/vendor

# package@version  destination-folder  files to copy (paths inside the package)
PACKAGES=(
    "cytoscape@3.34.4       cytoscape        dist/cytoscape.min.js LICENSE"
    "layout-base@2.0.1      layout-base      layout-base.js LICENSE"
    "cose-base@2.2.0        cose-base        cose-base.js LICENSE"
    "cytoscape-fcose@2.2.0  cytoscape-fcose  cytoscape-fcose.js LICENSE"
    "echarts@6.1.0          echarts          dist/echarts.min.js LICENSE NOTICE"
    "codemirror@5.65.21     codemirror       lib/codemirror.js lib/codemirror.css addon/hint/show-hint.js addon/hint/show-hint.css addon/edit/matchbrackets.js addon/display/placeholder.js LICENSE"
    "topojson-client@3.1.0  topojson-client  dist/topojson-client.min.js LICENSE"
    "world-atlas@2.0.2      world-atlas      countries-110m.json LICENSE"
)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rm -rf "$DEST"
mkdir -p "$DEST"
manifest="$work/manifest.jsonl"
: >"$manifest"

for line in "${PACKAGES[@]}"; do
    read -r spec folder files <<<"$line"
    echo "vendoring $spec"
    mkdir -p "$work/$folder"
    npm pack "$spec" --json --silent --pack-destination "$work" >"$work/$folder.json"
    tarball=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[0]["filename"])' "$work/$folder.json")
    tar -xzf "$work/$tarball" -C "$work/$folder"
    mkdir -p "$DEST/$folder"
    for f in $files; do
        mkdir -p "$DEST/$folder/$(dirname "$f")"
        cp "$work/$folder/package/$f" "$DEST/$folder/$f"
    done
    python3 - "$work/$folder.json" "$folder" $files >>"$manifest" <<'EOF'
import json, sys
info = json.load(open(sys.argv[1]))[0]
print(json.dumps({"package": info["name"], "version": info["version"], "integrity": info["integrity"],
                  "folder": sys.argv[2], "files": sys.argv[3:]}))
EOF
done

python3 - "$manifest" "$DEST" >"$DEST/VENDOR.json" <<'EOF'
import json, os, sys
dest = sys.argv[2]
packages = [json.loads(line) for line in open(sys.argv[1])]
for p in packages:
    p["bytes"] = sum(os.path.getsize(os.path.join(dest, p["folder"], f)) for f in p["files"])
print(json.dumps({"source": "npm registry, fetched by scripts/vendor-ui.sh", "packages": packages}, indent=2))
EOF
du -sh "$DEST"
