#!/usr/bin/env bash
# Builds the Debian package of one linux binary with nfpm (pinned below):
# the binary, man pages, bash/zsh/fish completions, the systemd unit and
# tmpfiles.d entry of contrib/, the copyright file and NOTICE.
#
#   VERSION=v1.2.3 SOURCE_DATE_EPOCH=... ARCH=amd64 BINARY=dist/ccmr_linux_amd64 \
#     OUT=dist bash scripts/deb.sh
#
# Man pages and completions come from a build of this tree for this machine
# with the man page generator (-tags ccmr_man, cmd/ccmr/man.go), so an
# arm64 package is built on amd64 as well. Every file carries
# SOURCE_DATE_EPOCH's time: one commit, one package, same bytes.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${VERSION:?}" "${SOURCE_DATE_EPOCH:?}" "${ARCH:?}" "${BINARY:?}" "${OUT:?}"
nfpm=${NFPM:-github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.48.0}
stage=$(mktemp -d "${TMPDIR:-/tmp}/ccmr-deb.XXXXXX")
trap 'rm -rf "$stage"' EXIT

mkdir -p "$stage/man" "$stage/completions" "$OUT"
host="$stage/ccmr-gen"
CGO_ENABLED=0 go build -tags ccmr_man -trimpath -buildvcs=false -ldflags "-X main.version=$VERSION" -o "$host" ./cmd/ccmr
SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH "$host" man "$stage/man"
# -n: no file name or time in the gzip header.
gzip -9n "$stage"/man/*.1
"$host" completion bash >"$stage/completions/ccmr"
"$host" completion zsh >"$stage/completions/_ccmr"
"$host" completion fish >"$stage/completions/ccmr.fish"
bash -n "$stage/completions/ccmr"

cat >"$stage/copyright" <<COPYRIGHT
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: ccmr
Source: https://github.com/ccmr-dev/ccmr

Files: *
Copyright: 2026 The ccmr Authors
License: Apache-2.0
Comment: The binary links the modules listed, with their licences and
 notices, in /usr/share/doc/ccmr/NOTICE.

License: Apache-2.0
 On Debian systems, the complete text of the Apache License, Version 2.0
 is in /usr/share/common-licenses/Apache-2.0.
COPYRIGHT

{
	cat <<YAML
name: ccmr
arch: ${ARCH}
platform: linux
version: ${VERSION}
section: admin
priority: optional
maintainer: The ccmr Authors <ccmr-dev@users.noreply.github.com>
homepage: https://github.com/ccmr-dev/ccmr
license: Apache-2.0
mtime: "$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)"
description: |-
  Measurement registers of confidential VMs
  ccmr reads and extends the measurement registers of a confidential VM
  (TPM PCRs, TDX MRTD/RTMRs, SEV-SNP), keeps virtual registers on a runtime
  log, forwards IMA into them, and verifies evidence bundles offline.
contents:
  - {src: "${BINARY}", dst: /usr/bin/ccmr, file_info: {mode: 0755}}
  - {src: contrib/systemd/ccmr-ima-forward.service, dst: /usr/lib/systemd/system/ccmr-ima-forward.service, file_info: {mode: 0644}}
  - {src: contrib/tmpfiles.d/ccmr.conf, dst: /usr/lib/tmpfiles.d/ccmr.conf, file_info: {mode: 0644}}
  - {src: "${stage}/copyright", dst: /usr/share/doc/ccmr/copyright, file_info: {mode: 0644}}
  - {src: NOTICE, dst: /usr/share/doc/ccmr/NOTICE, file_info: {mode: 0644}}
  - {src: "${stage}/completions/ccmr", dst: /usr/share/bash-completion/completions/ccmr, file_info: {mode: 0644}}
  - {src: "${stage}/completions/_ccmr", dst: /usr/share/zsh/vendor-completions/_ccmr, file_info: {mode: 0644}}
  - {src: "${stage}/completions/ccmr.fish", dst: /usr/share/fish/vendor_completions.d/ccmr.fish, file_info: {mode: 0644}}
YAML
	for f in "$stage"/man/*.1.gz; do
		echo "  - {src: \"$f\", dst: /usr/share/man/man1/$(basename "$f"), file_info: {mode: 0644}}"
	done
} >"$stage/nfpm.yaml"

GOFLAGS= go run "$nfpm" package --config "$stage/nfpm.yaml" --packager deb --target "$OUT/" >&2
