#!/usr/bin/env python3
"""Writes vectors.txt: extend results computed with Python's hashlib,
independently of the Go code under test. Run: python3 mkvectors.py > vectors.txt"""
import hashlib

def ext(alg, old, d):
    return hashlib.new(alg, old + d).digest()

print("# Extend vectors for backend/sim, made with: python3 mkvectors.py > vectors.txt")
print("# (Python %s hashlib; each value is H(old || digest) folded as described)." % __import__("sys").version.split()[0])
print("# extend    ALG START_HEX DIGEST_HEX RESULT_HEX          one extend")
print("# extendn   ALG START_HEX DIGEST_HEX N RESULT_HEX        N extends with the same digest")
print("# extenddata ALG START_HEX DATA_HEX RESULT_HEX           extend with H(data)")

z48 = bytes(48)
d = hashlib.sha384(b"ccmr rtmr3 test vector").digest()
print("extend sha384", z48.hex(), d.hex(), ext("sha384", z48, d).hex())

d = hashlib.sha384(b"ccmr concurrent extend").digest()
for n in (1, 2, 1000, 2000):
    v = z48
    for _ in range(n):
        v = ext("sha384", v, d)
    print("extendn sha384", z48.hex(), d.hex(), n, v.hex())

for alg in ("sha1", "sha256", "sha384"):
    size = hashlib.new(alg).digest_size
    data = b"hello ccmr"
    for start in (bytes(size),):
        print("extenddata", alg, start.hex(), data.hex(), ext(alg, start, hashlib.new(alg, data).digest()).hex())
