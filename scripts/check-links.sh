#!/usr/bin/env bash
# Checks every relative link of every Markdown file of the repository (tracked, or new and not ignored),
# offline: the target file or folder exists, and a `#anchor` names a heading of the target (its GitHub slug:
# lower case, punctuation dropped, spaces as hyphens, -1, -2 ... for repeats) or an HTML id/name in it.
# Links inside code blocks and code spans are not links and are skipped, and so are absolute URLs
# (https:, mailto: ...). An anchor into a file that is not Markdown (a line of code, say) is not checked.
# Also checks that docs/architecture.md's file map lists every Rust source file.
# Exits non-zero listing each broken link as file:line: target: why. Needs bash, git and python3 only.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

exec python3 - <<'PY'
import os, re, subprocess, sys, unicodedata
from urllib.parse import unquote

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
ATX = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)[ \t]*#*[ \t]*$")
SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
HTML_ID = re.compile(r"<a\s[^>]*?(?:name|id)\s*=\s*\"([^\"]+)\"", re.I)
CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.S)
# [text](target "title"), ![alt](target): the target is <...> or runs to a space or the closing paren
# (one level of balanced parentheses allowed inside).
INLINE = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*(<[^>]*>|(?:[^\s()]|\([^\s()]*\))*)(?:\s+[^)]*)?\)")
REFDEF = re.compile(r"^ {0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)")
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def prose_lines(text):
    """The lines outside fenced code blocks, with their numbers."""
    fence = None
    for number, line in enumerate(text.splitlines(), 1):
        match = FENCE.match(line)
        if fence is None and match:
            fence = match.group(1)[0] * len(match.group(1))
            continue
        if fence is not None:
            if line.strip().startswith(fence) and set(line.strip()) <= {fence[0]}:
                fence = None
            continue
        yield number, line


def slug(heading):
    """GitHub's anchor for a heading: its rendered text, lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML
    text = text.replace("`", "").lower()
    kept = []
    for char in text:
        category = unicodedata.category(char)
        if char in " -_" or category[0] in "LNM":
            kept.append(char)
    return "".join(kept).replace(" ", "-")


anchor_cache = {}


def anchors(path):
    """Every anchor a Markdown file offers: its headings slugged (repeats numbered) and its HTML ids."""
    if path in anchor_cache:
        return anchor_cache[path]
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    found, seen = set(), {}
    previous = ""
    for _, line in prose_lines(text):
        heading = None
        match = ATX.match(line)
        if match:
            heading = match.group(2)
        elif SETEXT.match(line) and previous.strip() and not previous.startswith((" " * 4, "\t")):
            heading = previous.strip()
        if heading is not None:
            base = slug(heading)
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
        found.update(HTML_ID.findall(line))
        previous = line
    anchor_cache[path] = found
    return found


def links(text):
    """(line number, target) of every link in the prose of a Markdown file."""
    for number, line in prose_lines(text):
        line = CODE_SPAN.sub(lambda m: " " * len(m.group(0)), line)
        for match in INLINE.finditer(line):
            yield number, match.group(1)
        match = REFDEF.match(line)
        if match:
            yield number, match.group(1)


broken = []
listed = subprocess.run(
    ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", "*.md"],
    check=True, capture_output=True, text=True,
).stdout
files = [name for name in listed.split("\0") if name and os.path.isfile(name)]
for source in sorted(files):
    with open(source, encoding="utf-8") as handle:
        text = handle.read()
    for number, target in links(text):
        target = target.strip("<>")
        if not target or SCHEME.match(target) or target.startswith("//"):
            continue
        path, _, anchor = target.partition("#")
        path = unquote(path)
        if path:
            resolved = os.path.normpath(os.path.join(os.path.dirname(source), path))
            if path.startswith("/"):
                resolved = os.path.normpath(path.lstrip("/"))
        else:
            resolved = source
        where = f"{source}:{number}: {target}"
        if resolved.startswith(".."):
            broken.append(f"{where}: points outside the repository")
        elif not os.path.exists(resolved):
            broken.append(f"{where}: {resolved} does not exist")
        elif anchor and resolved.endswith(".md") and os.path.isfile(resolved):
            if unquote(anchor).lower() not in anchors(resolved):
                broken.append(f"{where}: no heading #{anchor} in {resolved}")

# The file map of docs/architecture.md names every Rust source file, so a newcomer finds any behaviour
# from the paths alone; a file added or moved without its line there is reported like a broken link.
sources = subprocess.run(
    ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", "*.rs"],
    check=True, capture_output=True, text=True,
).stdout
with open("docs/architecture.md", encoding="utf-8") as handle:
    file_map = handle.read()
unlisted = [
    name for name in sorted(sources.split("\0"))
    if name and os.path.isfile(name) and f"](../{name})" not in file_map
]
for name in unlisted:
    broken.append(f"docs/architecture.md: file map: {name} is not listed")

for line in broken:
    print(line)
print(
    f"check-links: {len(files)} Markdown files, {len(broken) - len(unlisted)} broken links,"
    f" {len(unlisted)} source files missing from the file map",
    file=sys.stderr,
)
sys.exit(1 if broken else 0)
PY
