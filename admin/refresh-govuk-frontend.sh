#!/usr/bin/env bash
# Refreshes the GOV.UK Frontend files the pages serve (committed under assets/govuk-frontend/)
# from the npm registry. Usage: bash admin/refresh-govuk-frontend.sh [VERSION]
# The CSS refers to its fonts and images under /assets/, where the pages serve them.
set -euo pipefail
version="${1:-6.6.0}"
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "govuk-frontend@${version}" >/dev/null && tar xzf "govuk-frontend-${version}.tgz")
dist="$work/package/dist/govuk"
out="$here/assets/govuk-frontend"
rm -rf "$out"
mkdir -p "$out/fonts" "$out/images"
cp "$dist/govuk-frontend.min.css" "$dist/govuk-frontend.min.js" "$out/"
cp "$dist"/assets/fonts/*.woff "$dist"/assets/fonts/*.woff2 "$out/fonts/"
cp "$dist"/assets/images/* "$out/images/"
cp "$dist/assets/manifest.json" "$out/"
echo "$version" > "$out/VERSION"
# The package states its licence in package.json and README (MIT; documentation and images
# Crown copyright under the Open Government Licence v3.0); kept beside the files.
{
  echo "GOV.UK Frontend ${version} (https://github.com/alphagov/govuk-frontend)"
  echo
  sed -n '/^## Licence/,/^## /p' "$work/package/README.md" | sed '$d'
  echo
  cat <<'MIT'
The MIT License (MIT)

Copyright (c) 2018 Crown Copyright (Government Digital Service)

Permission is hereby granted, free of charge, to any person obtaining a copy of this software
and associated documentation files (the "Software"), to deal in the Software without
restriction, including without limitation the rights to use, copy, modify, merge, publish,
distribute, sublicense, and/or sell copies of the Software, and to permit persons to whom the
Software is furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all copies or
substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING
BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND
NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM,
DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.
MIT
} > "$out/LICENSE.txt"
echo "GOV.UK Frontend ${version} copied to ${out#"$here/"}"
