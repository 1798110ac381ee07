#!/usr/bin/env bash
# Prints the semver version of the checked-out commit: the v* tag's `git
# describe` (v1.2.0, or v1.2.0-3-gabcdef123456 past it); with no tag yet, a
# Go pseudo-version (v0.0.0-YYYYMMDDHHMMSS-abcdef123456), the form `go
# install` reports for an untagged commit. "+dirty" marks uncommitted changes.
set -euo pipefail
cd "$(dirname "$0")/.."
if v=$(git describe --tags --match 'v[0-9]*' --abbrev=12 2>/dev/null); then
	:
else
	v="v0.0.0-$(TZ=UTC git log -1 --format=%cd --date=format-local:%Y%m%d%H%M%S)-$(git rev-parse --short=12 HEAD)"
fi
git diff --quiet HEAD -- 2>/dev/null || v="$v+dirty"
echo "$v"
