#!/usr/bin/env bash
# Refreshes the README's screenshots of the dashboard from its browser tests: runs them in
# Chromium (Debian's chromium, chromium-driver and fonts-noto-mono must be installed), which save their
# screenshots under target/screenshots/, and copies the ones the README shows here.
set -euo pipefail
cd "$(dirname "$0")/../.."
rm -rf target/screenshots
CI=true cargo test --locked --test it -- browser::
for name in overview webhook playground dead-letters mappings-broken; do
  cp "target/screenshots/$name.png" "docs/images/dashboard-$name.png"
done
echo "docs/images/dashboard-*.png refreshed from target/screenshots/"
