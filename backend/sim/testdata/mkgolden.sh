#!/bin/sh
# Makes golden sim statements signed by OpenSSL, not by the Go code under test:
# a statement in the canonical form written by Python's json module, a fresh
# P-384 key from `openssl ecparam`, and `openssl dgst -sha384 -sign` (ASN.1 DER
# ECDSA over SHA-384). The private key is thrown away; only the public key is kept.
# Also writes the state files the fuzz targets start from.
# Run in backend/sim/testdata: sh mkgolden.sh
set -eu
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
openssl ecparam -name secp384r1 -genkey -noout | openssl pkcs8 -topk8 -nocrypt -out "$tmp/key.pem"
openssl pkey -in "$tmp/key.pem" -pubout -out golden-pub.pem
python3 - <<'PY'
import hashlib, json
def regs(layout):
    out = []
    if layout == "tdx":
        v = bytes(48)
        out.append(("mrtd", "sha384", 0, hashlib.sha384(b"golden mrtd").digest()))
        for i in range(4):
            out.append(("rtmr%d" % i, "sha384", i + 1, hashlib.sha384(b"golden rtmr%d" % i).digest()))
        for n in ("mrconfigid", "mrowner", "mrownerconfig"):
            out.append((n, "sha384", -1, v))
    else:
        for i in range(24):
            for a in ("sha1", "sha256", "sha384"):
                n = hashlib.new(a).digest_size
                v = b"\xff" * n if 17 <= i <= 22 else hashlib.new(a, b"golden pcr%d" % i).digest()
                out.append(("pcr%d" % i, a, i, v))
    return out
for layout in ("tdx", "tpm"):
    st = {"format": "ccmr-sim-attestation/v1", "layout": layout,
          "nonce": hashlib.sha256(b"golden nonce").hexdigest(),
          "time": "2025-06-01T12:34:56.789Z",
          "registers": [{"name": n, "alg": a, "index": i, "value": v.hex()} for n, a, i, v in regs(layout)]}
    open("golden-%s.json" % layout, "w").write(json.dumps(st, separators=(",", ":")))
    state = {"format": "ccmr-sim-state/v1", "layout": layout, "seq": 7,
             "registers": [{"name": n, "alg": a, "value": v.hex()} for n, a, i, v in regs(layout)]}
    open("state-%s.json" % layout, "w").write(json.dumps(state, separators=(",", ":")) + "\n")
PY
for l in tdx tpm; do
  openssl dgst -sha384 -sign "$tmp/key.pem" -out "golden-$l.sig" "golden-$l.json"
  openssl dgst -sha384 -verify golden-pub.pem -signature "golden-$l.sig" "golden-$l.json"
done
