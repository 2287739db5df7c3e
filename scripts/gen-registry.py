#!/usr/bin/env python3
"""Generate src/discover/registry.bin: who made this device, by PEN or by MAC.

The agent names a device's vendor from the enterprise number in its SNMP
sysObjectID (1.3.6.1.4.1.<PEN>...) or from the first bits of its MAC
address. This script compiles the two public registries into one compact,
compressed file that the agent embeds with include_bytes!. It is the only
writer of that file; rerun it when the Debian packages below are updated.

Inputs (Debian packages; paths can be overridden on the command line):
  /usr/share/wireshark/enterprises.tsv   libwireshark-data (4.0.17-0+deb12u3)
      IANA Private Enterprise Numbers, "NUMBER<TAB>ORGANISATION", '#'
      comments, an optional trailing "<TAB># formerly ..." note (dropped).
  /usr/share/ieee-data/oui.csv     MA-L, 24-bit (6 hex)  ieee-data (20220827.1)
  /usr/share/ieee-data/mam.csv     MA-M, 28-bit (7 hex)  ieee-data
  /usr/share/ieee-data/oui36.csv   MA-S, 36-bit (9 hex)  ieee-data
  /usr/share/ieee-data/iab.csv     IAB,  36-bit (9 hex)  ieee-data, merged
                                   into the MA-S section
      CSV "Registry,Assignment,Organization Name,Organization Address".
  The run prints the installed versions (dpkg-query, .lastupdate).

What is kept:
  IEEE: every assignment except those named "Private" or with no name. An
    assignment listed twice (two in oui.csv as of 20220827.1) keeps all its
    distinct names, joined with " / ".
  PEN: a subset. The whole PEN registry (~62,000 organisations, most of
    them universities, banks, shops and one-person software firms) does not
    fit the binary's size budget, and few of them ever answer SNMP from a
    box on a LAN. The rule: keep an enterprise number when its organisation
    also holds an IEEE MAC assignment (MA-L, MA-M, MA-S or IAB) -- the
    organisations that make networked hardware -- or when the number is in
    the optional keep-list (--keep FILE: one number per line, '#' comments),
    or when src/discover/vendors.toml's [enterprise] table names it (the
    aliases: their registered owner is what the agent checks a device's
    own words against).
    Organisations are matched by a key (see match_key): lower-case, accents
    folded, camelCase split, parentheses and URLs dropped, punctuation
    dropped, legal-form and filler words (inc, ltd, gmbh, systems,
    networks, ...) dropped, the remaining words joined. No brand list.
    (Matching by a distinctive first word as well would keep ~13,000
    numbers for ~90 KB more: numbers of acquired or renamed companies are
    better named in vendors.toml's [enterprise] aliases.)
  Placeholders are skipped: PEN 0, and names that are empty, "Reserved",
  "none", "---none---" or "Unassigned".

Size: the agent's whole footprint may grow by at most 900 KiB for the
registries and classification together (docs/classification.md), so this
file should stay under 680 KiB; the run prints bytes per section and says
by how much the file is over. With ieee-data 20220827.1 the IEEE sections
come to ~550 KB in 16 KiB blocks (~650 KB in 4 KiB blocks: bigger blocks
deflate better, and one still inflates in well under 0.1 ms). IEEE entries
are never dropped to meet the budget.

Names: trimmed, whitespace runs (tabs, newlines) collapsed to one space,
control characters removed, undecodable bytes replaced (U+FFFD), cut at 80
characters.

Format of registry.bin (all integers little-endian):
  magic            8 bytes  b"CPEREG1\\n"
  section_count    u32      = 4
  section headers  4 x (u32 key_bits, u32 block_count, u32 index_offset)
                   in this order: PEN (key_bits 0), MA-S (36), MA-M (28),
                   MA-L (24); index_offset is an absolute file offset.
  indexes          per section, block_count x
                   (u64 first_key, u32 data_offset, u32 data_len),
                   first_key strictly ascending, data_offset absolute.
  blocks           raw deflate (no zlib header; zlib wbits -15) of UTF-8
                   lines "KEY\\tNAME\\n", sorted by numeric key, keys unique.
                   KEY is decimal for PEN, upper-case hex of exactly 9/7/6
                   digits for MA-S/MA-M/MA-L. first_key is the numeric
                   value of the block's first KEY (hex parsed, not shifted).
                   A block's uncompressed text is at most 16384 bytes (bigger blocks
                   deflate better; one still inflates in well under 0.1 ms).
To look a key up: binary search the section's index for the last block with
first_key <= key, inflate it, scan its lines. For a MAC, try MA-S with its
top 36 bits, then MA-M (28), then MA-L (24): the longest prefix wins.

Usage:
  python3 scripts/gen-registry.py [--pen FILE] [--oui FILE] [--mam FILE]
      [--oui36 FILE] [--iab FILE] [--keep FILE] [-o OUT]
  OUT defaults to src/discover/registry.bin under the repository root (the
  parent of this script's folder). The run ends with a self-check that
  re-reads OUT like the agent would; it exits non-zero if a lookup fails.
"""
import argparse
import bisect
import csv
import os
import re
import struct
import subprocess
import sys
import unicodedata
import zlib
from pathlib import Path

MAGIC = b"CPEREG1\n"
BLOCK_MAX = 16384         # uncompressed bytes of one block, at most
NAME_MAX = 80             # characters of one name, at most
SIZE_BUDGET = 680 * 1024  # the file should stay under this

PEN_PACKAGE = "libwireshark-data"
IEEE_PACKAGE = "ieee-data"
DEFAULTS = {
    "pen": ("/usr/share/wireshark/enterprises.tsv", PEN_PACKAGE),
    "oui": ("/usr/share/ieee-data/oui.csv", IEEE_PACKAGE),
    "mam": ("/usr/share/ieee-data/mam.csv", IEEE_PACKAGE),
    "oui36": ("/usr/share/ieee-data/oui36.csv", IEEE_PACKAGE),
    "iab": ("/usr/share/ieee-data/iab.csv", IEEE_PACKAGE),
}
LASTUPDATE = "/usr/share/ieee-data/.lastupdate"

# (title, key_bits, hex digits or 0 for decimal), in file order.
SECTIONS = [("PEN", 0, 0), ("MA-S", 36, 9), ("MA-M", 28, 7), ("MA-L", 24, 6)]
SECTION_DIGITS = {bits: digits for _, bits, digits in SECTIONS}

PLACEHOLDERS = {"", "reserved", "none", "unassigned"}

# Words that say what kind of company it is, not which one. Dropped from
# the matching key so "Cisco Systems, Inc." and "ciscoSystems" meet. Not
# here: net, tech, comm, network, system -- as halves of camelCase names
# ("NetComm", "TechNet", "NetworkFX") they are the name.
FILLER = set("""
    inc incorporated corp corporation co company companies cos ltd limited
    ltda llc llp lp plc pty pte pvt private gmbh mbh ag kg ohg ug ev se sa
    sas sab sac sae sarl sl slu srl sro spa snc sprl bv nv vof ab publ oy
    oyj as asa aps kk yk gk kabushiki kaisha bhd sdn kft zrt jsc ojsc pjsc
    ooo zao oao cv de the and group holdings holding international intl
    technologies technology systems networks communications communication
    electronics electronic
    industrial industries industry enterprise enterprises solutions solution
    products manufacturing mfg
""".split())


def die(msg):
    print(f"gen-registry: {msg}", file=sys.stderr)
    sys.exit(1)


def clean_name(raw):
    """The name as stored: one line, no tabs, at most NAME_MAX characters."""
    s = "".join(ch for ch in raw
                if not (unicodedata.category(ch) == "Cc" and not ch.isspace()))
    s = " ".join(s.split())
    return s[:NAME_MAX].rstrip()


def is_placeholder(name):
    return re.sub(r"[^a-z0-9]", "", name.lower()) in PLACEHOLDERS


def match_key(name):
    """The key two organisation names must share to count as one."""
    s = re.sub(r"([a-z])([A-Z])", r"\1 \2", name)       # ciscoSystems
    s = unicodedata.normalize("NFKD", s)
    s = "".join(ch for ch in s if not unicodedata.combining(ch)).lower()
    s = re.sub(r"\([^)]*\)?", " ", s)                    # (url), (formerly x)
    s = re.sub(r"\b(?:https?://|www\.)\S*", " ", s)
    s = re.sub(r"\S+\.(?:com|net|org)\b\S*", " ", s)
    s = re.sub(r"(?<=\b[a-z])[./](?=[a-z]\b)", "", s)    # s.a., a/s, s.r.o.
    s = s.replace(".", "")                               # co.,ltd. inc.
    words = re.split(r"[^0-9a-z]+", s)
    key = "".join(w for w in words if w and w not in FILLER)
    return key if len(key) >= 2 else ""



def open_input(path, package):
    if not os.path.isfile(path):
        die(f"{path} is missing: install the Debian package {package} "
            f"(apt-get install {package}) or pass its path")
    # Undecodable bytes become U+FFFD rather than stopping the run.
    return open(path, encoding="utf-8", errors="replace", newline="")


def add(table, key, name, dups):
    """One entry; a key seen twice keeps every distinct name."""
    old = table.get(key)
    if old is None:
        table[key] = [name]
    elif name not in old:
        old.append(name)
        dups.add(key)


def read_pen(path):
    table, dups, skipped = {}, set(), 0
    with open_input(path, PEN_PACKAGE) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            m = re.match(r"(\d+)\s+(.*)$", line)
            if not m:
                m = re.match(r"(\d+)$", line)
                if not m:
                    die(f"{path}:{n}: not 'NUMBER<TAB>NAME': {line[:60]!r}")
                skipped += 1
                continue
            number = int(m.group(1))
            name = clean_name(m.group(2).split("\t")[0])  # drop "\t# formerly"
            if number == 0 or is_placeholder(name):
                skipped += 1
                continue
            add(table, number, name, dups)
    return table, dups, skipped


def read_ieee(path, package, registry, digits):
    table, dups, skipped = {}, set(), 0
    with open_input(path, package) as f:
        rows = csv.reader(f)
        header = next(rows, None)
        if not header or [h.strip() for h in header[:3]] != \
                ["Registry", "Assignment", "Organization Name"]:
            die(f"{path}: unexpected header {header!r}")
        for n, row in enumerate(rows, 2):
            if not row:
                continue
            if len(row) < 3 or row[0].strip() != registry:
                die(f"{path}:{n}: not a {registry} row: {row!r}")
            assignment = row[1].strip().upper()
            if not re.fullmatch(r"[0-9A-F]{%d}" % digits, assignment):
                die(f"{path}:{n}: assignment {assignment!r} is not "
                    f"{digits} hex digits")
            name = clean_name(row[2])
            if not name or name.lower() == "private":
                skipped += 1
                continue
            add(table, int(assignment, 16), name, dups)
    return table, dups, skipped


def read_keep(path):
    keep = set()
    try:
        f = open(path, encoding="utf-8")
    except OSError as e:
        die(f"keep-list {path}: {e.strerror}")
    with f:
        for n, line in enumerate(f, 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            if not line.isdigit():
                die(f"{path}:{n}: not an enterprise number: {line!r}")
            keep.add(int(line))
    return keep


def read_vendor_numbers(path):
    """The enterprise numbers vendors.toml names: their registered owner is
    what the agent checks the device's own words against when the alias
    names a later owner (an old Xirrus AP under Cambium's alias)."""
    import tomllib
    try:
        with open(path, "rb") as f:
            table = tomllib.load(f).get("enterprise", {})
    except (OSError, tomllib.TOMLDecodeError) as e:
        die(f"{path}: {e}")
    return {int(k) for k in table if k.isdigit()}


def joined(table):
    """key -> one name (distinct names of a key joined with ' / ')."""
    return {k: clean_name(" / ".join(v)) for k, v in table.items()}


def blocks_of(entries, digits):
    """Split sorted (key, name) into blocks of at most BLOCK_MAX bytes."""
    blocks, lines, size, first = [], [], 0, None
    for key, name in sorted(entries.items()):
        text = (f"{key:0{digits}X}" if digits else str(key))
        line = f"{text}\t{name}\n".encode("utf-8")
        assert len(line) <= BLOCK_MAX
        if lines and size + len(line) > BLOCK_MAX:
            blocks.append((first, b"".join(lines)))
            lines, size = [], 0
        if not lines:
            first = key
        lines.append(line)
        size += len(line)
    if lines:
        blocks.append((first, b"".join(lines)))
    return blocks


def deflate(raw):
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return c.compress(raw) + c.flush()


def build(sections):
    """sections: [(key_bits, [(first_key, raw)])] -> (file bytes, stats)."""
    header_len = len(MAGIC) + 4 + 12 * len(sections)
    index_len = sum(16 * len(blocks) for _, blocks in sections)
    offset = header_len + index_len
    headers, indexes, datas, stats = [], [], [], []
    index_offset = header_len
    for key_bits, blocks in sections:
        headers.append(struct.pack("<III", key_bits, len(blocks), index_offset))
        index_offset += 16 * len(blocks)
        raw_total = packed_total = 0
        for first_key, raw in blocks:
            packed = deflate(raw)
            indexes.append(struct.pack("<QII", first_key, offset, len(packed)))
            datas.append(packed)
            offset += len(packed)
            raw_total += len(raw)
            packed_total += len(packed)
        stats.append((len(blocks), raw_total, packed_total + 16 * len(blocks)))
    out = b"".join([MAGIC, struct.pack("<I", len(sections))]
                   + headers + indexes + datas)
    assert len(out) == offset
    return out, stats


# ---- the reader, as the agent would do it -----------------------------

class Reader:
    def __init__(self, data):
        if data[:8] != MAGIC:
            raise ValueError("bad magic")
        (count,) = struct.unpack_from("<I", data, 8)
        self.data, self.sections = data, {}
        for i in range(count):
            bits, nblocks, at = struct.unpack_from("<III", data, 12 + 12 * i)
            index = [struct.unpack_from("<QII", data, at + 16 * j)
                     for j in range(nblocks)]
            self.sections[bits] = index

    def block(self, bits, i):
        _, at, length = self.sections[bits][i]
        return zlib.decompress(self.data[at:at + length], -15)

    def lookup(self, bits, key):
        index = self.sections[bits]
        i = bisect.bisect_right([e[0] for e in index], key) - 1
        if i < 0:
            return None
        for line in self.block(bits, i).decode("utf-8").splitlines():
            text, name = line.split("\t", 1)
            if (int(text, 16) if bits else int(text)) == key:
                return name
        return None

    def lookup_mac(self, mac):
        """Longest registered prefix of a 48-bit MAC, as (bits, name)."""
        value = int(re.sub(r"[^0-9A-Fa-f]", "", mac), 16)
        for bits in (36, 28, 24):
            name = self.lookup(bits, value >> (48 - bits))
            if name is not None:
                return bits, name
        return None

    def entries(self, bits):
        out = {}
        for i, (first_key, _, _) in enumerate(self.sections[bits]):
            raw = self.block(bits, i)
            if len(raw) > BLOCK_MAX:
                raise ValueError(f"block {i} is {len(raw)} bytes")
            keys = []
            for line in raw.decode("utf-8").splitlines():
                text, name = line.split("\t", 1)
                if len(text) != (SECTION_DIGITS[bits] or len(text)):
                    raise ValueError(f"block {i}: key {text!r}")
                keys.append(int(text, 16) if bits else int(text))
                out[keys[-1]] = name
            if not keys or keys[0] != first_key or keys != sorted(set(keys)):
                raise ValueError(f"block {i}: keys unsorted or first_key "
                                 f"{first_key} is not the first")
        return out


def self_check(path, expected):
    """Re-read the written file; return a list of failures."""
    failures = []
    r = Reader(Path(path).read_bytes())
    if sorted(r.sections) != [0, 24, 28, 36]:
        return [f"sections {sorted(r.sections)}"]
    for (title, bits, digits), want in zip(SECTIONS, expected):
        index = r.sections[bits]
        firsts = [e[0] for e in index]
        if firsts != sorted(set(firsts)):
            failures.append(f"{title}: index not strictly ascending")
        try:
            got = r.entries(bits)
        except ValueError as e:
            failures.append(f"{title}: {e}")
            continue
        if got != want:
            failures.append(f"{title}: {len(got)} entries read back, "
                            f"{len(want)} written, or names differ")
    probes = [  # (what, bits, key, name must start with)
        ("PEN 9", 0, 9, "cisco"),
        ("PEN 11", 0, 11, "hewlett"),
        ("MA-L 00000C", 24, 0x00000C, "cisco"),
        ("MA-M 208593B", 28, 0x208593B, "iog products"),
        ("MA-S 70B3D5F2F", 36, 0x70B3D5F2F, "teleplatforms"),
        ("IAB 0050C27D5", 36, 0x0050C27D5, "deuta-werke"),
    ]
    for what, bits, key, prefix in probes:
        name = r.lookup(bits, key)
        ok = name is not None and name.lower().startswith(prefix)
        print(f"  {what:<16} -> {name!r}{'' if ok else '   FAILED'}")
        if not ok:
            failures.append(f"{what}: {name!r}")
    absent = next(k for k in range(0x000001, 0x1000000)
                  if k not in expected[3])
    if (name := r.lookup(24, absent)) is not None:
        failures.append(f"MA-L {absent:06X} is not assigned but found: "
                        f"{name!r}")
    mac = "70:B3:D5:F2:FA:BC"   # MA-S beats the MA-L 70B3D5 it sits in
    hit = r.lookup_mac(mac)
    print(f"  MAC {mac} -> {hit!r}")
    if not hit or hit[0] != 36 or not hit[1].lower().startswith("teleplatforms"):
        failures.append(f"MAC {mac}: {hit!r}")
    return failures


# ---- main ---------------------------------------------------------------

def versions():
    out = []
    try:
        v = subprocess.run(
            ["dpkg-query", "-W", "-f=${Package} ${Version}\n",
             PEN_PACKAGE, IEEE_PACKAGE],
            capture_output=True, text=True, timeout=20).stdout.strip()
        out += v.splitlines() or ["dpkg-query: packages not found"]
    except (OSError, subprocess.SubprocessError):
        out.append("dpkg-query not available")
    try:
        out.append("ieee-data .lastupdate "
                   + Path(LASTUPDATE).read_text().strip())
    except OSError:
        out.append(f"{LASTUPDATE} not readable")
    return out


def main():
    repo = Path(__file__).resolve().parent.parent
    p = argparse.ArgumentParser(
        description="Generate the PEN/OUI vendor registry embedded in "
                    "the agent (see the module docstring for the format).")
    for name, (path, package) in DEFAULTS.items():
        p.add_argument(f"--{name}", default=path,
                       help=f"input (package {package}; default {path})")
    p.add_argument("--keep", metavar="FILE",
                   help="enterprise numbers to keep regardless (one a line)")
    p.add_argument("--vendors", metavar="FILE",
                   default=str(repo / "src/discover/vendors.toml"),
                   help="keep every enterprise number of this file's "
                        "[enterprise] table too (default "
                        "src/discover/vendors.toml; '' for none)")
    p.add_argument("-o", "--output",
                   default=str(repo / "src/discover/registry.bin"),
                   help="output (default src/discover/registry.bin)")
    a = p.parse_args()

    pen, pen_dups, pen_skipped = read_pen(a.pen)
    ieee = {}
    for name, registry, digits in (("oui", "MA-L", 6), ("mam", "MA-M", 7),
                                   ("oui36", "MA-S", 9), ("iab", "IAB", 9)):
        ieee[registry] = read_ieee(getattr(a, name), DEFAULTS[name][1],
                                   registry, digits)
    keep = read_keep(a.keep) if a.keep else set()
    if a.vendors:
        keep |= read_vendor_numbers(a.vendors)

    # The 36-bit section: MA-S and IAB share one number space.
    mas = {k: list(v) for k, v in ieee["MA-S"][0].items()}
    for k, names in ieee["IAB"][0].items():
        for n in names:
            add(mas, k, n, ieee["IAB"][1])

    # PEN subset: the organisation holds an IEEE assignment, or keep-list.
    holders = {match_key(n) for table, _, _ in ieee.values()
               for names in table.values() for n in names} - {""}
    kept, by_oui, by_list = {}, 0, 0
    for number, names in pen.items():
        if any(match_key(n) in holders for n in names):
            by_oui += 1
        elif number in keep:
            by_list += 1
        else:
            continue
        kept[number] = names
    missing = sorted(keep - pen.keys())

    tables = [joined(kept), joined(mas), joined(ieee["MA-M"][0]),
              joined(ieee["MA-L"][0])]
    sections = [(bits, blocks_of(t, digits))
                for (_, bits, digits), t in zip(SECTIONS, tables)]
    data, stats = build(sections)

    out = Path(a.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, out)

    print("inputs:")
    for v in versions():
        print(f"  {v}")
    print(f"PEN: {len(pen)} named numbers read ({pen_skipped} placeholders "
          f"skipped); kept {len(kept)} ({by_oui} organisation holds an IEEE "
          f"assignment, {by_list} keep-list only), dropped "
          f"{len(pen) - len(kept)}")
    if a.keep:
        print(f"  keep-list {a.keep}: {len(keep)} numbers"
              + (f", {len(missing)} not in the PEN registry: "
                 f"{missing[:10]}" if missing else ""))
    for registry, (table, dups, skipped) in ieee.items():
        print(f"{registry}: {len(table)} assignments ({skipped} private or "
              f"unnamed skipped; {len(dups)} listed twice, names joined)")
    print(f"{'section':<8} {'entries':>8} {'blocks':>7} {'raw B':>9} "
          f"{'file B':>9}")
    for (title, _, _), t, (nblocks, raw, packed) in zip(SECTIONS, tables,
                                                         stats):
        print(f"{title:<8} {len(t):>8} {nblocks:>7} {raw:>9} {packed:>9}")
    header = len(MAGIC) + 4 + 12 * len(SECTIONS)
    print(f"{'header':<8} {'':>8} {'':>7} {'':>9} {header:>9}")
    print(f"total: {len(data)} bytes ({len(data) / 1024:.1f} KiB) -> {out}")
    if len(data) > SIZE_BUDGET:
        ieee_bytes = sum(packed for _, _, packed in stats[1:])
        print(f"OVER BUDGET: {len(data)} bytes is {len(data) - SIZE_BUDGET} "
              f"over {SIZE_BUDGET} (680 KiB). The IEEE sections alone take "
              f"{ieee_bytes}"
              + (", so no PEN subset fits: " if ieee_bytes > SIZE_BUDGET
                 else f"; PEN takes {stats[0][2]}: a smaller keep-list or "
                      f"stricter match key, or ")
              + "bigger blocks or one shared table of distinct names "
              "(format changes). IEEE entries are never dropped.")

    print("self-check:")
    failures = self_check(out, tables)
    if failures:
        for f in failures:
            print(f"  FAILED: {f}", file=sys.stderr)
        sys.exit(1)
    print("  ok")


if __name__ == "__main__":
    main()
