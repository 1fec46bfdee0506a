#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""strop's rules for the public API documentation, checked on Doxygen's XML of include/strop.

Doxygen (docs/Doxyfile, warnings as errors) already refuses an undocumented declaration,
parameter or return value. This adds what Doxygen does not know (STYLE.md, docs/abi.md):

- every header has a @file block with a brief (Doxygen silently skips one without it);
- every function has a @brief; every parameter a direction: [in], [out] or [in,out];
- a function returning strop_status names STROP_OK in @return, and every status it names
  exists in strop_status;
- every function, type, enum and macro says @since 0.x, and a function's @since is the node
  of lib/strop.map that exports it (0.2 = STROP_0.2);
- enum values and struct fields are described;
- @deprecated and the STROP_DEPRECATED attribute go together, and the text names the
  replacement (a strop_ function);
- every strop_model_* function is declared in model.h.

Usage: check_apidoc.py XML_DIR INCLUDE_DIR STROP_MAP [--stats]
  --stats prints counts of each kind of gap and exits 0 (run on an EXTRACT_ALL=YES tree to
  measure a header set before it is documented).
"""
import os
import re
import sys
import xml.etree.ElementTree as ET


def text(node):
    return "" if node is None else "".join(node.itertext()).strip()


def since_of(member):
    for s in member.iter("simplesect"):
        if s.get("kind") == "since":
            return text(s)
    return None


def map_nodes(path):
    """symbol -> '0.x' from the version script's global: lists."""
    src = open(path).read()
    src = re.sub(r"/\*.*?\*/", " ", src, flags=re.S)
    src = re.sub(r"#[^\n]*", " ", src)
    out = {}
    for m in re.finditer(r"STROP_(\d+\.\d+)\s*\{(.*?)\}", src, re.S):
        body = m.group(2)
        g = re.search(r"global:(.*?)(local:|$)", body, re.S)
        for sym in re.findall(r"([A-Za-z_]\w*)\s*;", g.group(1) if g else ""):
            out[sym] = m.group(1)
    # a function the map lists under a newer node because its struct grew keeps its first
    # release in an older version (lib/recipe/abi_compat.c: `.symver impl,NAME@STROP_x.y`):
    # its @since is that first release
    compat = os.path.join(os.path.dirname(path), "recipe", "abi_compat.c")
    if os.path.exists(compat):
        for sym, ver in re.findall(r"\.symver\s+\w+,(\w+)@STROP_(\d+\.\d+)", open(compat).read()):
            if sym in out and tuple(map(int, ver.split("."))) < tuple(map(int, out[sym].split("."))):
                out[sym] = ver
    return out


def deprecated_decls(incdir):
    """Names of the functions whose declaration carries STROP_DEPRECATED."""
    names = set()
    for f in sorted(os.listdir(incdir)):
        if not f.endswith(".h"):
            continue
        src = open(os.path.join(incdir, f)).read()
        src = re.sub(r"/\*.*?\*/", " ", src, flags=re.S)
        src = re.sub(r"^[ \t]*#[^\n]*(\\\n[^\n]*)*", " ", src, flags=re.M)
        for decl in src.split(";"):
            if "STROP_API" in decl and re.search(r"\bSTROP_DEPRECATED\b", decl):
                m = re.search(r"(\w+)\s*\(", decl.split("STROP_API", 1)[1])
                if m:
                    names.add(m.group(1))
    return names


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    stats = "--stats" in sys.argv
    if len(args) != 3:
        print(__doc__)
        return 2
    xmldir, incdir, mappath = args
    nodes = map_nodes(mappath)
    deprecated_attr = deprecated_decls(incdir)
    problems = []
    count = {}

    def gap(kind, where, msg):
        count[kind] = count.get(kind, 0) + 1
        problems.append("%s: %s" % (where, msg))

    statuses = set()
    files = sorted(f for f in os.listdir(xmldir) if f.endswith(".xml"))
    trees = {f: ET.parse(os.path.join(xmldir, f)) for f in files}
    for t in trees.values():
        for m in t.iter("memberdef"):
            if m.get("kind") == "enum" and m.findtext("name") == "strop_status":
                statuses = {v.findtext("name") for v in m.iter("enumvalue")}
    # a header without a documented @file block is skipped by Doxygen without a warning
    documented_files = set()
    for t in trees.values():
        for comp in t.getroot().iter("compounddef"):
            if comp.get("kind") == "file" and text(comp.find("briefdescription")):
                documented_files.add(comp.findtext("compoundname"))
    for h in sorted(os.listdir(incdir)):
        if h.endswith(".h") and h not in documented_files:
            gap("header without a @file brief", h,
                "no documented @file block: Doxygen skips its declarations silently")
    nfunc = ntype = 0
    for f, t in trees.items():
        root = t.getroot()
        for comp in root.iter("compounddef"):
            ckind = comp.get("kind")
            cname = comp.findtext("compoundname")
            if ckind == "struct":
                ntype += 1
                where = cname
                if not text(comp.find("briefdescription")):
                    gap("type without a brief", where, "no @brief")
                if since_of(comp) is None:
                    gap("type without @since", where, "no @since")
                for m in comp.iter("memberdef"):
                    if m.get("kind") == "variable" and not (
                            text(m.find("briefdescription")) or text(m.find("detaileddescription"))):
                        gap("undescribed field", "%s.%s" % (cname, m.findtext("name")),
                            "field not described")
                continue
            if ckind != "file":
                continue
            for m in comp.iter("memberdef"):
                kind = m.get("kind")
                name = m.findtext("name")
                loc = m.find("location")
                where = "%s:%s: %s" % (loc.get("file"), loc.get("line"), name)
                brief = text(m.find("briefdescription"))
                detail = m.find("detaileddescription")
                if kind == "function":
                    nfunc += 1
                    if name.startswith("strop_model_") and loc.get("file") != "strop/model.h":
                        gap("strop_model_* outside model.h", where,
                            "every strop_model_* function is declared in model.h (docs/abi.md)")
                    if not brief:
                        gap("function without a brief", where, "no @brief")
                    documented = {}
                    for pl in detail.iter("parameterlist"):
                        if pl.get("kind") != "param":
                            continue
                        for pn in pl.iter("parametername"):
                            documented[text(pn)] = pn.get("direction")
                    params = [p.findtext("declname") for p in m.findall("param")
                              if p.findtext("declname")]
                    missing = [p for p in params if p not in documented]
                    if missing:
                        gap("function with an undocumented parameter", where,
                            "parameters not documented: " + ", ".join(missing))
                    nodir = [p for p in params if p in documented and not documented[p]]
                    if nodir:
                        gap("function with a parameter without [in]/[out]", where,
                            "no [in]/[out]/[in,out] on: " + ", ".join(nodir))
                    rtype = text(m.find("type"))
                    ret = None
                    for s in detail.iter("simplesect"):
                        if s.get("kind") == "return":
                            ret = text(s)
                    if rtype != "void" and ret is None:
                        gap("non-void function without @return", where, "no @return")
                    if rtype == "strop_status" and ret is not None:
                        if "STROP_OK" not in ret:
                            gap("status function whose @return lacks STROP_OK", where,
                                "@return does not name STROP_OK")
                    for st in re.findall(r"\bSTROP_E_\w+", ret or ""):
                        if statuses and st not in statuses:
                            gap("unknown status named", where, "names %s, not a strop_status" % st)
                    sv = since_of(m)
                    if sv is None:
                        gap("function without @since", where, "no @since")
                    elif name in nodes and not sv.startswith(nodes[name]):
                        gap("@since differs from lib/strop.map", where,
                            "@since %s but lib/strop.map exports it in STROP_%s" % (sv, nodes[name]))
                    dep = [x for x in detail.iter("xrefsect")
                           if (x.get("id") or "").startswith("deprecated")]
                    if dep and name not in deprecated_attr:
                        gap("@deprecated without STROP_DEPRECATED", where,
                            "documented @deprecated but declared without STROP_DEPRECATED")
                    if name in deprecated_attr and not dep:
                        gap("STROP_DEPRECATED without @deprecated", where,
                            "declared STROP_DEPRECATED but has no @deprecated")
                    if dep and not re.search(r"\bstrop_\w+\(\)", text(dep[0])):
                        gap("@deprecated without a replacement", where,
                            "@deprecated names no replacement strop_...()")
                elif kind in ("typedef", "enum", "define"):
                    ntype += 1
                    if kind == "enum" and name.startswith("@"):
                        where = where.replace(name, "anonymous enum of " + ", ".join(
                            v.findtext("name") for v in m.iter("enumvalue")))
                    if not brief:
                        gap("type or macro without a brief", where, "no @brief")
                    if since_of(m) is None:
                        gap("type or macro without @since", where, "no @since")
                    for v in m.iter("enumvalue"):
                        if not (text(v.find("briefdescription")) or
                                text(v.find("detaileddescription"))):
                            gap("undescribed enum value", where,
                                "enum value %s not described" % v.findtext("name"))
                elif kind == "variable":
                    continue
    if stats:
        print("check_apidoc: %d functions, %d types, enums and macros" % (nfunc, ntype))
        for k in sorted(count):
            print("  %4d %s" % (count[k], k))
        return 0
    if problems:
        for p in problems:
            print("FAIL: " + p)
        print("check_apidoc: %d problems in %d functions and %d types, enums and macros"
              % (len(problems), nfunc, ntype))
        return 1
    print("check_apidoc: ok — %d functions, %d types, enums and macros" % (nfunc, ntype))
    return 0


if __name__ == "__main__":
    sys.exit(main())
