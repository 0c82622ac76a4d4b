#!/usr/bin/env python3
"""Generate docs/api.md from include/hma.h: the header comments are the source.

Usage: gen-api-doc.py include/hma.h > docs/api.md
Each section banner (/* ==== */ /* Title */) becomes a heading; each
declaration (function, static inline wrapper, type, enum, macro) is printed
with the comment that precedes or follows it on the same line.
"""
import re
import sys


def main(path):
    text = open(path, encoding="utf-8").read()
    lines = text.split("\n")
    out = ["# libhma API reference", "",
           "Generated from `include/hma.h` by `tools/gen-api-doc.py`; do not edit by hand",
           "(`make docs` regenerates it, and `make test` checks it is current).", ""]
    # The file's opening comment is the overview.
    m = re.match(r"/\*(.*?)\*/", text, re.S)
    if m:
        body = [re.sub(r"^ ?\* ?", "", l) for l in m.group(1).split("\n")]
        out += ["## Overview", "", "```text"] + [l.rstrip() for l in body if l.strip() != "*"] + ["```", ""]
    i = 0
    pending = []
    n = len(lines)
    while i < n:
        line = lines[i]
        s = line.strip()
        if s.startswith("/* ====="):
            # banner: next line holds the title
            title = lines[i + 1].strip().strip("/*").strip()
            if title:
                out += ["## " + title, ""]
            i += 3
            pending = []
            continue
        if s.startswith("/*") and i > 0:
            block = [s]
            while not block[-1].endswith("*/") and i + 1 < n:
                i += 1
                block.append(lines[i].strip())
            pending = block
            i += 1
            continue
        if s.startswith(("HMA_API", "typedef", "#define HMA_", "enum", "static inline")) \
                and not s.startswith("#define HMA_API") and "HMA_H" not in s and "HMA_STRINGIFY" not in s:
            decl = [line.rstrip()]
            depth = line.count("{") - line.count("}")
            if s.startswith("#define"):
                while decl[-1].endswith("\\") and i + 1 < n:
                    i += 1
                    decl.append(lines[i].rstrip())
            elif s.startswith("static inline"):
                # an inline wrapper: shown whole, up to the brace closing its body
                while (depth > 0 or "{" not in "".join(decl)) and i + 1 < n:
                    i += 1
                    decl.append(lines[i].rstrip())
                    depth += lines[i].count("{") - lines[i].count("}")
            else:
                while (depth > 0 or not decl[-1].rstrip().endswith(";")) and i + 1 < n:
                    i += 1
                    decl.append(lines[i].rstrip())
                    depth += lines[i].count("{") - lines[i].count("}")
            comment = "\n".join(re.sub(r"^/?\*+/? ?|\*/$", "", c).strip() for c in pending).strip()
            out.append("```c")
            out += decl
            out.append("```")
            if comment:
                out += ["", comment]
            out.append("")
            pending = []
            i += 1
            continue
        if s == "":
            pass
        elif not s.startswith("/*"):
            pending = []
        i += 1
    sys.stdout.write("\n".join(out).rstrip() + "\n")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "include/hma.h")
