#!/usr/bin/env python3
"""What the registry's enterprise-number subset loses on the dev set: the
recordings of ../shared/devices-dev whose sysObjectID enterprise number is
neither in src/discover/registry.bin (organisations that also hold an IEEE
block, see scripts/gen-registry.py) nor named in src/discover/vendors.toml.
Prints their count, then (stem, number) pairs.

    python3 scripts/registry-loss.py
"""
import os
import re
import struct
import tomllib
import zlib

os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
blob = open("src/discover/registry.bin", "rb").read()
sections = [struct.unpack_from("<III", blob, 12 + 12 * i)
            for i in range(struct.unpack_from("<I", blob, 8)[0])]
_, blocks, index = next(s for s in sections if s[0] == 0)
kept = set()
for i in range(blocks):
    _, offset, length = struct.unpack_from("<QII", blob, index + 16 * i)
    text = zlib.decompress(blob[offset:offset + length], -15).decode()
    kept.update(int(line.split("\t")[0]) for line in text.splitlines())
with open("src/discover/vendors.toml", "rb") as f:
    named = {int(k) for k in tomllib.load(f)["enterprise"]}
lost = []
for line in open("../shared/devices-dev/labels.tsv"):
    if line.startswith("#"):
        continue
    row = line.rstrip("\n").split("\t")
    m = re.match(r"1\.3\.6\.1\.4\.1\.(\d+)", row[6])
    if m and int(m.group(1)) not in kept | named:
        lost.append((row[0], int(m.group(1))))
print(len(lost))
for stem, number in lost:
    print(stem, number)
