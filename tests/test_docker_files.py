#!/usr/bin/env python3
"""Static checks of the container and deployment files in docker/ (no Docker engine needed).

What linters cannot see is checked against the sources the files describe:
  * docker/Dockerfile: a CUDA devel build stage and a runtime stage of the same pinned CUDA 13 /
    Ubuntu 24.04 version, a non-root USER, a HEALTHCHECK on /healthz, no ADD of URLs, pinned base
    tags, build packages covering scripts/setup-debian.sh, no compilers or -dev packages in the
    runtime stage, the libwebsockets libuv plugin, apt hygiene, an exec-form wmserve ENTRYPOINT.
  * every WMSERVE_* variable set (Dockerfile, compose) is one that server/config.c reads; every
    other WM_* one appears in engine/ or server/ sources.
  * every metric, label and label value in the dashboard, the alert rules and prometheus.yml exists
    in server/metrics.c (error codes in proto/proto.c); counters appear only under rate/increase,
    gauges never; histogram_quantile takes _bucket series aggregated by le.
  * compose.yaml, haproxy.cfg, prometheus.yml and the Grafana provisioning agree with each other
    (services, ports, targets, mount paths, datasource uid) and every file they mount exists.
Then linters when installed (each skipped with a message only when its program is absent):
yamllint -s on every YAML file, `haproxy -c` on haproxy.cfg (only "could not resolve" warnings
allowed: the compose service names do not resolve here). Each linter is also run on a broken
copy, which must fail.

Finally a self-test: each of ~25 mutations of the files (a removed USER, a misspelt metric, a
gauge under rate(), an unknown WMSERVE_ variable, a missing mounted file, ...) must make the
check it targets fail, so that no check passes vacuously.

The YAML files are read by a small parser of the subset they use (block maps and lists, flow
lists, quoted and block scalars), standard library only; when PyYAML happens to be importable its
result is compared with it. Exit status 0 when every check passed.
"""
import argparse
import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile


class CheckError(Exception):
    pass


# ---- repository view (with overrides for the mutation self-test) -----------------------------

class Files:
    def __init__(self, root, over=None):
        self.root = root
        self.over = dict(over or {})

    def read(self, rel):
        if rel in self.over:
            if self.over[rel] is None:
                raise CheckError("%s: missing" % rel)
            return self.over[rel]
        path = os.path.join(self.root, rel)
        if not os.path.isfile(path):
            raise CheckError("%s: missing" % rel)
        with open(path, encoding="utf-8") as f:
            return f.read()

    def exists(self, rel):
        rel = os.path.normpath(rel)
        if rel in self.over:
            return self.over[rel] is not None
        return os.path.exists(os.path.join(self.root, rel))


# ---- a YAML subset parser ----------------------------------------------------------------------

def _strip_comment(s):
    q = None
    for i, c in enumerate(s):
        if q:
            if c == q:
                q = None
        elif c in "\"'":
            q = c
        elif c == "#" and (i == 0 or s[i - 1] in " \t"):
            return s[:i].rstrip()
    return s.rstrip()


def _split_flow(s):
    out, cur, q = [], "", None
    for c in s:
        if q:
            cur += c
            if c == q:
                q = None
        elif c in "\"'":
            q = c
            cur += c
        elif c == ",":
            out.append(cur.strip())
            cur = ""
        else:
            cur += c
    if cur.strip():
        out.append(cur.strip())
    return out


def _scalar(s, where):
    s = s.strip()
    if s == "" or s in ("~", "null"):
        return None
    if s[0] == '"':
        if len(s) < 2 or s[-1] != '"':
            raise CheckError("%s: unterminated string" % where)
        return json.loads(s)
    if s[0] == "'":
        if len(s) < 2 or s[-1] != "'":
            raise CheckError("%s: unterminated string" % where)
        return s[1:-1].replace("''", "'")
    if s[0] == "[":
        if s[-1] != "]":
            raise CheckError("%s: flow list not closed on its line" % where)
        return [_scalar(x, where) for x in _split_flow(s[1:-1])]
    if s[0] in "{&*!|>@`%":
        raise CheckError("%s: YAML construct outside the supported subset: %s" % (where, s))
    return s


def _key_split(s):
    q = None
    for i, c in enumerate(s):
        if q:
            if c == q:
                q = None
        elif c in "\"'":
            q = c
        elif c == ":" and (i + 1 == len(s) or s[i + 1] == " "):
            return s[:i].strip().strip("\"'"), s[i + 1:].strip()
    return None


def yaml_load(text, name):
    raw = text.split("\n")
    lines = []  # (indent, content, raw line number)
    for n, r in enumerate(raw):
        if "\t" in r[: len(r) - len(r.lstrip())]:
            raise CheckError("%s:%d: tab in indentation" % (name, n + 1))
        lines.append((len(r) - len(r.lstrip(" ")), r.strip(), n))
    pos = [0]

    def skip_blank():
        while pos[0] < len(lines) and _strip_comment(lines[pos[0]][1]) == "":
            pos[0] += 1

    def block_scalar(style, parent_indent):
        parts = []
        while pos[0] < len(lines):
            ind, content, _ = lines[pos[0]]
            if content and ind <= parent_indent:
                break
            parts.append(content)
            pos[0] += 1
        while parts and parts[-1] == "":
            parts.pop()
        return ("\n" if style.startswith("|") else " ").join(parts)

    def value_after_key(rest, indent, where):
        if rest in ("|", "|-", ">", ">-"):
            pos[0] += 1
            return block_scalar(rest, indent)
        if rest:
            pos[0] += 1
            return _scalar(rest, where)
        pos[0] += 1
        skip_blank()
        if pos[0] < len(lines):
            ind, content, _ = lines[pos[0]]
            if ind > indent or (ind == indent and content.startswith("-")):
                return node(ind)
        return None

    def node(indent):
        skip_blank()
        ind, content, n = lines[pos[0]]
        content = _strip_comment(content)
        if content == "-" or content.startswith("- "):
            seq = []
            while True:
                skip_blank()
                if pos[0] >= len(lines):
                    break
                ind, content, n = lines[pos[0]]
                content = _strip_comment(content)
                if ind != indent or not (content == "-" or content.startswith("- ")):
                    if ind > indent:
                        raise CheckError("%s:%d: bad indentation" % (name, n + 1))
                    break
                item = content[1:].strip()
                where = "%s:%d" % (name, n + 1)
                if not item:
                    pos[0] += 1
                    skip_blank()
                    seq.append(node(lines[pos[0]][0]))
                elif _key_split(item) and not item.startswith(("\"", "'", "[")):
                    sub = ind + (len(content) - len(item))
                    lines[pos[0]] = (sub, item, n)
                    seq.append(node(sub))
                else:
                    seq.append(_scalar(item, where))
                    pos[0] += 1
            return seq
        mapping = {}
        while True:
            skip_blank()
            if pos[0] >= len(lines):
                break
            ind, content, n = lines[pos[0]]
            content = _strip_comment(content)
            if ind < indent:
                break
            if ind > indent:
                raise CheckError("%s:%d: bad indentation" % (name, n + 1))
            if content.startswith("- "):
                break
            kv = _key_split(content)
            where = "%s:%d" % (name, n + 1)
            if not kv:
                raise CheckError("%s: expected 'key: value'" % where)
            if kv[0] in mapping:
                raise CheckError("%s: duplicate key %s" % (where, kv[0]))
            mapping[kv[0]] = value_after_key(kv[1], ind, where)
        return mapping

    skip_blank()
    if pos[0] >= len(lines):
        return None
    doc = node(lines[pos[0]][0])
    skip_blank()
    if pos[0] < len(lines):
        raise CheckError("%s:%d: unexpected content" % (name, lines[pos[0]][2] + 1))
    return doc


def _normalize(v):
    if isinstance(v, dict):
        return {str(k): _normalize(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_normalize(x) for x in v]
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return None
    return " ".join(str(v).split())


# ---- facts from the sources --------------------------------------------------------------------

class Facts:
    """What the sources define: environment variables, metrics and their types, labels."""

    def __init__(self, files):
        cfg = files.read("server/config.c")
        self.env = set(re.findall(r'"(WMSERVE_[A-Z0-9_]+)"', cfg))
        if len(self.env) < 10:
            raise CheckError("server/config.c: found only %d WMSERVE_ variables" % len(self.env))
        self.sources = ""
        for d in ("server", "engine"):
            for dirpath, _, names in os.walk(os.path.join(files.root, d)):
                for nm in names:
                    if nm.endswith((".c", ".h")):
                        rel = os.path.relpath(os.path.join(dirpath, nm), files.root)
                        self.sources += files.read(rel)
        self.sources += cfg
        m = files.read("server/metrics.c")
        self.types = {}
        for n in re.findall(r'gauge\(\s*o,\s*"(wmserve_\w+)"', m):
            self.types[n] = "gauge"
        for n in re.findall(r'\]\s*=\s*\{\s*"(wmserve_\w+)"', m):
            self.types[n] = "counter"
        for n, t in re.findall(r"# TYPE (wmserve_\w+) (gauge|counter|histogram)", m):
            self.types[n] = t
        for n in list(self.types):
            if n.startswith("wmserve_") and ('"%s' % n) not in m:
                raise CheckError("metrics.c parse: %s is not a string literal" % n)
        self.series = {}  # series name -> kind used by the PromQL checks
        for n, t in self.types.items():
            if t == "histogram":
                self.series[n + "_bucket"] = "counter"
                self.series[n + "_sum"] = "counter"
                self.series[n + "_count"] = "counter"
            else:
                self.series[n] = t
        if len([t for t in self.types.values() if t == "histogram"]) < 2 or len(self.series) < 20:
            raise CheckError("server/metrics.c: too few metrics found (%d)" % len(self.series))
        self.labels = set(re.findall(r'(\w+)=\\"', m)) | {"le"}
        self.label_values = {"stage": set(re.findall(r'stage=\\"(\w+)\\"', m))}
        proto = files.read("proto/proto.c")
        self.label_values["code"] = set(re.findall(r'\]\s*=\s*\{\s*"(\w+)",\s*(?:true|false)\s*\}',
                                                   proto))
        if len(self.label_values["code"]) < 10 or len(self.label_values["stage"]) < 3:
            raise CheckError("label values of code/stage not found in proto.c/metrics.c")
        self.histograms_by = {n: ("stage" if n == "wmserve_stage_seconds" else None)
                              for n, t in self.types.items() if t == "histogram"}

    def env_known(self, key):
        if key.startswith("WMSERVE_"):
            return key in self.env
        if key.startswith("WM_"):
            return ('"%s"' % key) in self.sources
        return True


# ---- PromQL ------------------------------------------------------------------------------------

FUNCS = {"sum", "avg", "min", "max", "count", "topk", "bottomk", "quantile", "rate", "irate",
         "increase", "delta", "idelta", "histogram_quantile", "clamp_min", "clamp_max", "abs",
         "round", "avg_over_time", "max_over_time", "min_over_time", "sum_over_time", "time",
         "vector", "scalar", "label_replace", "absent", "changes", "resets", "deriv"}
AGG_MOD = {"by", "without", "on", "ignoring", "group_left", "group_right"}
AGGREGATORS = {"sum", "avg", "min", "max", "count", "topk", "bottomk", "quantile"}
KEYWORDS = {"and", "or", "unless", "bool", "offset"}
COUNTER_FUNCS = {"rate", "irate", "increase", "resets"}
TOKEN = re.compile(r'\s*(?:(?P<str>"(?:[^"\\]|\\.)*"|\'[^\']*\')|(?P<dur>\[[^\]]*\])|'
                   r'(?P<num>\d+(?:\.\d+)?(?:e[+-]?\d+)?)|(?P<id>[A-Za-z_:][A-Za-z0-9_:]*)|'
                   r'(?P<op>=~|!~|!=|==|>=|<=|[-+*/%^(){},=<>]))')


def promql_errors(expr, facts, extra_labels, where):
    errs = []
    toks, i = [], 0
    while i < len(expr):
        if expr[i:].strip() == "":
            break
        m = TOKEN.match(expr, i)
        if not m:
            return ["%s: cannot tokenize PromQL at %r" % (where, expr[i:i + 20])]
        kind = m.lastgroup
        toks.append((kind, m.group(kind)))
        i = m.end()
    labels_ok = facts.labels | {"instance", "job"} | set(extra_labels)
    stack = []  # open parentheses: function name or None
    pending = None  # an aggregator whose "by (...)" comes before its "("
    metrics_used = []
    k = 0
    while k < len(toks):
        kind, v = toks[k]
        nxt = toks[k + 1] if k + 1 < len(toks) else (None, None)
        if kind == "op" and v == "(":
            stack.append(pending)
            pending = None
        elif kind == "op" and v == ")":
            if not stack:
                errs.append("%s: unbalanced ')'" % where)
            else:
                stack.pop()
        elif kind == "op" and v == "{":
            k += 1
            while k < len(toks) and toks[k] != ("op", "}"):
                if toks[k][0] == "id":
                    lab = toks[k][1]
                    if lab not in labels_ok:
                        errs.append("%s: label %s is not exported" % (where, lab))
                    if k + 2 < len(toks) and toks[k + 2][0] == "str":
                        op, val = toks[k + 1][1], toks[k + 2][1][1:-1]
                        known = facts.label_values.get(lab)
                        if known and "$" not in val:
                            alts = val.split("|") if op in ("=~", "!~") else [val]
                            for a in alts:
                                if re.fullmatch(r"\w+", a) and a not in known:
                                    errs.append("%s: %s=%r is not a value of %s" %
                                                (where, lab, a, lab))
                k += 1
            if k >= len(toks):
                errs.append("%s: unclosed '{'" % where)
        elif kind == "id" and v in AGG_MOD and nxt == ("op", "("):
            k += 2
            group = []
            while k < len(toks) and toks[k] != ("op", ")"):
                if toks[k][0] == "id":
                    group.append(toks[k][1])
                    if toks[k][1] not in labels_ok:
                        errs.append("%s: label %s (in %s) is not exported" % (where, toks[k][1], v))
                k += 1
            if "le" in group:
                metrics_used.append(("__by_le__", None))
        elif kind == "id" and v in AGGREGATORS and nxt[0] == "id" and nxt[1] in AGG_MOD:
            pending = v
        elif kind == "id" and nxt == ("op", "("):
            if v not in FUNCS:
                errs.append("%s: unknown PromQL function %s" % (where, v))
            stack.append(v)
            k += 1
        elif kind == "id" and v in KEYWORDS:
            pass
        elif kind == "id":
            inner = [f for f in stack if f]
            metrics_used.append((v, inner[-1] if inner else None))
            if v == "up":
                pass
            elif v not in facts.series:
                errs.append("%s: metric %s is not exported by server/metrics.c" % (where, v))
            else:
                t = facts.series[v]
                fn = inner[-1] if inner else None
                if t == "counter" and fn not in COUNTER_FUNCS:
                    errs.append("%s: counter %s used outside rate()/increase()" % (where, v))
                if t == "gauge" and fn in COUNTER_FUNCS:
                    errs.append("%s: gauge %s used inside %s()" % (where, v, fn))
                if v.endswith("_bucket") and "histogram_quantile" not in inner:
                    errs.append("%s: %s outside histogram_quantile()" % (where, v))
        k += 1
    if stack:
        errs.append("%s: unbalanced '('" % where)
    if "histogram_quantile" in expr:
        if not any(m[0] == "__by_le__" for m in metrics_used):
            errs.append("%s: histogram_quantile without aggregation by le" % where)
        if not any(m[0].endswith("_bucket") for m in metrics_used if m[0] != "__by_le__"):
            errs.append("%s: histogram_quantile of no _bucket series" % where)
    return errs


def wmserve_metric_names(expr):
    return set(re.findall(r"\bwmserve_\w+", expr))


# ---- the Dockerfile ----------------------------------------------------------------------------

def dockerfile_parse(text):
    out, cur, start = [], "", None
    for n, line in enumerate(text.split("\n"), 1):
        s = line.strip()
        if not cur and (s == "" or s.startswith("#")):
            continue
        if cur and s.startswith("#"):
            continue
        if start is None:
            start = n
        if s.endswith("\\"):
            cur += s[:-1] + " "
            continue
        cur += s
        ins, _, args = cur.partition(" ")
        out.append((ins.upper(), args.strip(), start))
        cur, start = "", None
    if cur:
        raise CheckError("Dockerfile: continuation at end of file")
    stages = []
    for ins, args, n in out:
        if ins == "FROM":
            m = re.match(r"(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?$", args, re.I)
            if not m:
                raise CheckError("Dockerfile:%d: cannot parse FROM %s" % (n, args))
            stages.append({"image": m.group(1), "name": m.group(2), "line": n, "ins": []})
        elif not stages:
            if ins != "ARG":
                raise CheckError("Dockerfile:%d: %s before the first FROM" % (n, ins))
        else:
            stages[-1]["ins"].append((ins, args, n))
    return out, stages


def apt_packages(run):
    pkgs = []
    for m in re.finditer(r"apt-get install ([^&;|]*)", run):
        pkgs += [w for w in m.group(1).split() if not w.startswith("-")]
    return pkgs


CUDA_IMAGE = re.compile(r"nvidia/cuda:(\d+)\.(\d+)\.(\d+)-(devel|runtime)-ubuntu24\.04$")
# scripts/setup-debian.sh's build libraries -> their Ubuntu 24.04 names in the build stage.
UBUNTU_DEV = {"libjpeg62-turbo-dev": "libjpeg-turbo8-dev", "libmsgpack-dev": "libmsgpack-c-dev"}
NOT_NEEDED_IN_IMAGE = {"libomp-dev"}  # clang's OpenMP: the image builds with gcc


def check_dockerfile(files, facts):
    errs = []
    text = files.read("docker/Dockerfile")
    allins, stages = dockerfile_parse(text)
    if len(stages) < 2:
        return ["Dockerfile: %d stage(s); expected a build stage and a runtime stage" % len(stages)]
    names = {s["name"] for s in stages if s["name"]}
    for s in stages:
        img = s["image"]
        if img in names:
            continue
        if "@sha256:" in img:
            continue
        tag = img.rpartition(":")[2] if ":" in img.rpartition("/")[2] else ""
        if not tag or tag == "latest" or not re.search(r"\d+\.\d+", tag):
            errs.append("Dockerfile:%d: base image %s is not pinned to a version" %
                        (s["line"], img))
    first, last = stages[0], stages[-1]
    mf, ml = CUDA_IMAGE.match(first["image"]), CUDA_IMAGE.match(last["image"])
    if not mf or mf.group(4) != "devel":
        errs.append("Dockerfile: the first stage must be FROM nvidia/cuda:X.Y.Z-devel-ubuntu24.04")
    if not ml or ml.group(4) != "runtime":
        errs.append("Dockerfile: the last stage must be FROM nvidia/cuda:X.Y.Z-runtime-ubuntu24.04")
    if mf and ml and mf.groups()[:3] != ml.groups()[:3]:
        errs.append("Dockerfile: devel %s and runtime %s differ in CUDA version" %
                    (".".join(mf.groups()[:3]), ".".join(ml.groups()[:3])))
    if mf and mf.group(1) != "13":
        errs.append("Dockerfile: CUDA %s; the GPU hosts run CUDA 13" % mf.group(1))
    if not first["name"]:
        errs.append("Dockerfile: the build stage needs a name (FROM ... AS build)")
    for ins, args, n in allins:
        if ins == "ADD" and re.search(r"(https?|ftp)://|git@|\.git\b", args):
            errs.append("Dockerfile:%d: ADD of a URL (download in a RUN with a checksum)" % n)
        if ins == "RUN" and "|" in re.sub(r"\|\|", "", args) and "pipefail" not in text:
            errs.append("Dockerfile:%d: a pipe in RUN without SHELL ... pipefail" % n)
        if ins == "RUN" and "apt-get install" in args:
            if "--no-install-recommends" not in args:
                errs.append("Dockerfile:%d: apt-get install without --no-install-recommends" % n)
            if "rm -rf /var/lib/apt/lists" not in args:
                errs.append("Dockerfile:%d: apt lists not removed in the same RUN" % n)
            if "apt-get update" not in args:
                errs.append("Dockerfile:%d: apt-get install without apt-get update" % n)
    # Build stage: packages, configure, build, no tests.
    build_runs = " ".join(a for i, a, _ in first["ins"] if i == "RUN")
    build_pkgs = set(apt_packages(build_runs))
    setup = files.read("scripts/setup-debian.sh")
    m = re.search(r"PACKAGES=\((.*?)\n\)", setup, re.S)
    if not m:
        errs.append("scripts/setup-debian.sh: PACKAGES=( ... ) not found")
    else:
        body = "\n".join(_strip_comment(x) for x in m.group(1).split("\n"))
        for entry in body.split():
            alts = entry.strip('"').split("|")
            devs = [a for a in alts if a.endswith("-dev")]
            if not devs or set(devs) & NOT_NEEDED_IN_IMAGE:
                continue
            wanted = {UBUNTU_DEV.get(a, a) for a in devs}
            if not wanted & build_pkgs:
                errs.append("Dockerfile build stage installs none of %s (scripts/setup-debian.sh "
                            "needs %s)" % (sorted(wanted), entry))
    for need in ("build-essential", "cmake", "ninja-build", "pkg-config", "libwebsockets-evlib-uv"):
        if need not in build_pkgs:
            errs.append("Dockerfile build stage does not install %s" % need)
    if "-DCMAKE_BUILD_TYPE=Release" not in build_runs:
        errs.append("Dockerfile: the build is not configured with -DCMAKE_BUILD_TYPE=Release")
    archs = re.search(r"CMAKE_CUDA_ARCHITECTURES=([^\"' ]+)", build_runs)
    if not archs or not {"90a-real", "90-virtual"} <= set(archs.group(1).split(";")):
        errs.append("Dockerfile: CUDA architectures must be 90a-real;90-virtual (sm_90a + sm_90)")
    if "-DWM_CUDA=ON" not in build_runs:
        errs.append("Dockerfile: the build must require CUDA (-DWM_CUDA=ON)")
    if re.search(r"\bctest\b|--target\s+test\b|ninja\s+test\b", build_runs):
        errs.append("Dockerfile: the build stage runs tests (CI runs them)")
    for t in ("wmserve", "wmgen"):
        if not re.search(r"--target[^&]*\b%s\b" % t, build_runs):
            errs.append("Dockerfile: the build does not build target %s" % t)
    # Runtime stage.
    ri = last["ins"]
    runs = " ".join(a for i, a, _ in ri if i == "RUN")
    rpkgs = set(apt_packages(runs))
    for p in sorted(rpkgs):
        if p.endswith("-dev") or p in ("build-essential", "cmake", "gcc", "g++", "ninja-build",
                                       "clang", "cuda-toolkit", "cuda-nvcc"):
            errs.append("Dockerfile runtime stage installs build package %s" % p)
    for need in ("libwebsockets-evlib-uv",):
        if need not in rpkgs:
            errs.append("Dockerfile runtime stage does not install %s" % need)
    copies = [a for i, a, _ in ri if i == "COPY"]
    if not any(("--from=%s" % first["name"]) in a and "/wmserve" in a for a in copies):
        errs.append("Dockerfile: the runtime stage does not COPY wmserve from the build stage")
    if not any("/web" in a for a in copies):
        errs.append("Dockerfile: the runtime stage does not copy web/")
    users = [(a, n) for i, a, n in ri if i == "USER"]
    if not users:
        errs.append("Dockerfile: the runtime stage has no USER (it would run as root)")
    else:
        u, n = users[-1]
        if u.split(":")[0] in ("root", "0"):
            errs.append("Dockerfile:%d: USER %s is root" % (n, u))
        if any(i == "RUN" and nn > n for i, _, nn in ri):
            errs.append("Dockerfile: RUN after the final USER")
    hc = [(a, n) for i, a, n in ri if i == "HEALTHCHECK"]
    if not hc:
        errs.append("Dockerfile: the runtime stage has no HEALTHCHECK")
    else:
        a, n = hc[-1]
        if "/healthz" not in a or a.strip().upper() == "NONE":
            errs.append("Dockerfile:%d: HEALTHCHECK does not probe /healthz" % n)
        if "curl" in a and "curl" not in rpkgs:
            errs.append("Dockerfile:%d: HEALTHCHECK uses curl, which is not installed" % n)
        if "wget" in a and "wget" not in rpkgs:
            errs.append("Dockerfile:%d: HEALTHCHECK uses wget, which is not installed" % n)
    ep = [(a, n) for i, a, n in ri if i == "ENTRYPOINT"]
    if not ep:
        errs.append("Dockerfile: no ENTRYPOINT")
    else:
        try:
            argv = json.loads(ep[-1][0])
            if not argv or not str(argv[0]).endswith("wmserve"):
                errs.append("Dockerfile: ENTRYPOINT is not wmserve")
        except ValueError:
            errs.append("Dockerfile: ENTRYPOINT is not in exec (JSON) form")
    env = {}
    for i, a, n in ri:
        if i == "ENV":
            for k, v in re.findall(r"(\w+)=(\"[^\"]*\"|\S+)", a):
                env[k] = v.strip('"')
                if not facts.env_known(k):
                    errs.append("Dockerfile:%d: ENV %s is read by nothing (server/config.c)" %
                                (n, k))
    port = env.get("WMSERVE_PORT")
    if not port or not port.isdigit() or port == "0":
        errs.append("Dockerfile: ENV WMSERVE_PORT must be a fixed port (health check, EXPOSE)")
    elif not any(i == "EXPOSE" and port in a.split() for i, a, _ in ri):
        errs.append("Dockerfile: EXPOSE does not include WMSERVE_PORT %s" % port)
    if env.get("WMSERVE_BIND") not in ("0.0.0.0", "::"):
        errs.append("Dockerfile: WMSERVE_BIND must listen on every interface in a container")
    if env.get("WMSERVE_LOG_FORMAT", "json") not in ("text", "json"):
        errs.append("Dockerfile: WMSERVE_LOG_FORMAT must be text or json")
    if not any(i == "VOLUME" and "/models" in a for i, a, _ in ri):
        errs.append("Dockerfile: no VOLUME /models")
    if "/opt/wmserve/web" not in env.get("WMSERVE_WEB", "") and "WMSERVE_WEB" not in env:
        errs.append("Dockerfile: WMSERVE_WEB not set (the build's web/ path does not exist)")
    return errs


def check_dockerignore(files, facts):
    errs = []
    pats = [p.strip() for p in files.read(".dockerignore").split("\n")
            if p.strip() and not p.strip().startswith("#")]
    for need in (".git", "build*/", "gpub-*/"):
        if need not in pats:
            errs.append(".dockerignore: %s is not excluded" % need)
    for src in ("CMakeLists.txt", "engine", "server", "proto", "web", "tests", "scripts"):
        excluded = False
        for p in pats:
            neg = p.startswith("!")
            pp = p.lstrip("!").rstrip("/")
            if fnmatch.fnmatch(src, pp):
                excluded = not neg
        if excluded:
            errs.append(".dockerignore excludes %s, which the build needs" % src)
    return errs


# ---- compose, HAProxy, Prometheus, Grafana ------------------------------------------------------

def load_yaml(files, rel):
    text = files.read(rel)
    doc = yaml_load(text, rel)
    try:
        import yaml  # noqa: only to cross-check the subset parser when it happens to be there
    except ImportError:
        return doc
    try:
        ref = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise CheckError("%s: PyYAML rejects it: %s" % (rel, e))
    if _normalize(ref) != _normalize(doc):
        raise CheckError("%s: the subset parser and PyYAML disagree" % rel)
    return doc


def wmserve_services(compose):
    out = {}
    for name, svc in (compose.get("services") or {}).items():
        b = svc.get("build") or {}
        if str(svc.get("image", "")).startswith("wmserve") or \
                str(b.get("dockerfile", "")).endswith("Dockerfile"):
            out[name] = svc
    return out


def default_port(files):
    _, stages = dockerfile_parse(files.read("docker/Dockerfile"))
    for i, a, _ in stages[-1]["ins"]:
        m = re.search(r"WMSERVE_PORT=(\d+)", a) if i == "ENV" else None
        if m:
            return m.group(1)
    return "8080"


def split_colons(s):
    """Splits a compose volume string on ':' outside ${...} interpolations."""
    parts, cur, depth = [], "", 0
    for i, ch in enumerate(s):
        if ch == "$" and s[i + 1:i + 2] == "{":
            depth += 1
        elif ch == "}" and depth:
            depth -= 1
        if ch == ":" and not depth:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return parts


def mounts(svc):
    out = []
    for v in svc.get("volumes") or []:
        parts = split_colons(str(v))
        if len(parts) >= 2:
            out.append((parts[0], parts[1], parts[2:] if len(parts) > 2 else []))
    return out


def check_compose(files, facts):
    errs = []
    c = load_yaml(files, "docker/compose.yaml")
    services = c.get("services") or {}
    wm = wmserve_services(c)
    if len(wm) < 2:
        errs.append("compose.yaml: %d wmserve service(s); expected one per GPU set (>= 2)" %
                    len(wm))
    port = default_port(files)
    seen_gpus = {}
    for name, svc in wm.items():
        b = svc.get("build")
        if b:
            ctx = os.path.normpath(os.path.join("docker", b.get("context", ".")))
            df = os.path.normpath(os.path.join(ctx, b.get("dockerfile", "Dockerfile")))
            if not files.exists(ctx) or not files.exists(df):
                errs.append("compose.yaml %s: build context %s / %s missing" % (name, ctx, df))
        try:
            devs = svc["deploy"]["resources"]["reservations"]["devices"]
        except (KeyError, TypeError):
            errs.append("compose.yaml %s: no deploy.resources.reservations.devices" % name)
            devs = []
        for d in devs or []:
            if d.get("driver") != "nvidia" or "gpu" not in (d.get("capabilities") or []):
                errs.append("compose.yaml %s: device reservation is not driver nvidia, "
                            "capabilities [gpu]" % name)
            ids = d.get("device_ids") or []
            if not ids:
                errs.append("compose.yaml %s: no device_ids (each service its own GPUs)" % name)
            for g in ids:
                if g in seen_gpus:
                    errs.append("compose.yaml: GPU %s given to %s and %s" % (g, seen_gpus[g], name))
                seen_gpus[g] = name
        env = svc.get("environment") or {}
        if isinstance(env, list):
            env = dict(str(e).partition("=")[::2] for e in env)
        for k in env:
            if not facts.env_known(k):
                errs.append("compose.yaml %s: %s is read by nothing (server/config.c)" % (name, k))
        if str(env.get("WMSERVE_PORT", port)) != port:
            errs.append("compose.yaml %s: WMSERVE_PORT differs from the image's %s" % (name, port))
        if not any(t == "/models" and "ro" in o for _, t, o in mounts(svc)):
            errs.append("compose.yaml %s: /models is not mounted read-only" % name)
        if svc.get("ports"):
            errs.append("compose.yaml %s: publishes ports (players must go through the LB)" % name)
    for name, svc in services.items():
        img = str(svc.get("image", ""))
        if name not in wm and (":" not in img or img.endswith(":latest") or
                               not re.search(r":v?\d+\.\d+", img)):
            errs.append("compose.yaml %s: image %r is not pinned to a version" % (name, img))
        for src, tgt, _ in mounts(svc):
            if src.startswith((".", "/")) and "${" not in src:
                rel = os.path.normpath(os.path.join("docker", src))
                if not files.exists(rel):
                    errs.append("compose.yaml %s: mounted %s does not exist" % (name, rel))
            elif not src.startswith(("$", ".", "/")) and src not in (c.get("volumes") or {}):
                errs.append("compose.yaml %s: named volume %s is not declared" % (name, src))
    roles = {"haproxy.cfg": None, "prometheus.yml": None, "prometheus-alerts.yml": None,
             "grafana/provisioning": None, "grafana/dashboards": None}
    for name, svc in services.items():
        for src, tgt, _ in mounts(svc):
            for r in roles:
                if os.path.normpath(src) == r:
                    roles[r] = (name, tgt)
    for r, v in roles.items():
        if v is None:
            errs.append("compose.yaml: no service mounts ./%s" % r)
    return errs, c, wm, roles


def parse_duration(s):
    m = re.fullmatch(r"(\d+)(ms|s|m|h|d)?", s)
    if not m:
        return None
    mult = {"ms": 0.001, "s": 1, None: 0.001, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
    return int(m.group(1)) * mult


def check_haproxy(files, facts):
    errs = []
    cerrs, c, wm, roles = check_compose(files, facts)
    text = files.read("docker/haproxy.cfg")
    lines = [_strip_comment(x).strip() for x in text.split("\n")]
    lines = [x for x in lines if x]
    port = default_port(files)
    servers = {}
    for x in lines:
        m = re.match(r"server\s+(\S+)\s+([^\s:]+):(\d+)(.*)", x)
        if m:
            servers[m.group(2)] = (m.group(1), m.group(3), m.group(4))
    for name in wm:
        if name not in servers:
            errs.append("haproxy.cfg: no server line for compose service %s" % name)
        elif servers[name][1] != port:
            errs.append("haproxy.cfg: %s on port %s, wmserve listens on %s" %
                        (name, servers[name][1], port))
    for host in servers:
        if host not in (c.get("services") or {}):
            errs.append("haproxy.cfg: server %s is not a compose service" % host)
    tun = [parse_duration(x.split()[2]) for x in lines if x.startswith("timeout tunnel")]
    if not tun or tun[-1] is None or tun[-1] < 600:
        errs.append("haproxy.cfg: 'timeout tunnel' (websocket inactivity) missing or < 10m")
    sticky_cookie = any(re.match(r"cookie\s+\S+\s+insert", x) for x in lines)
    sticky_src = any(x in ("balance source",) or x.startswith("stick on src") for x in lines)
    if not (sticky_cookie or sticky_src):
        errs.append("haproxy.cfg: no per-session stickiness (cookie insert or source)")
    if sticky_cookie:
        vals = [re.search(r"\bcookie\s+(\S+)", s[2]) for s in servers.values()]
        if not all(vals) or len({v.group(1) for v in vals}) != len(vals):
            errs.append("haproxy.cfg: every server needs its own 'cookie' value")
    if not any(x.startswith("option httpchk") for x in lines) or \
            not any("/healthz" in x for x in lines if "check" in x):
        errs.append("haproxy.cfg: no HTTP health check on /healthz")
    if not any(re.match(r"http-check expect status 200", x) for x in lines):
        errs.append("haproxy.cfg: the health check does not expect status 200")
    has_check = any(x.startswith("default-server") and re.search(r"\bcheck\b", x) for x in lines)
    if not has_check and not all(re.search(r"\bcheck\b", s[2]) for s in servers.values()):
        errs.append("haproxy.cfg: servers are not health-checked")
    if not any("init-addr" in x and "none" in x for x in lines):
        errs.append("haproxy.cfg: no 'init-addr ... none' (start before the names resolve)")
    hap = [n for n, s in (c.get("services") or {}).items() if "haproxy" in str(s.get("image", ""))]
    binds = [x.split()[1].rpartition(":")[2] for x in lines if x.startswith("bind ")]
    for n in hap:
        for p in (c["services"][n].get("ports") or []):
            inner = str(p).rpartition(":")[2]
            if inner not in binds:
                errs.append("compose.yaml %s publishes %s, which haproxy.cfg does not bind" %
                            (n, p))
    if re.search(r"\bwmserve_\w+", text):
        for n in wmserve_metric_names(text):
            if n not in facts.series:
                errs.append("haproxy.cfg: metric %s is not exported" % n)
    return errs


def target_labels(prom):
    """Labels that prometheus.yml adds to the series: static target labels, external labels."""
    out = set(((prom.get("global") or {}).get("external_labels") or {}).keys())
    for j in prom.get("scrape_configs") or []:
        for sc in j.get("static_configs") or []:
            out |= set((sc.get("labels") or {}).keys())
    return out


def check_prometheus(files, facts):
    errs = []
    _, c, wm, roles = check_compose(files, facts)
    p = load_yaml(files, "docker/prometheus.yml")
    port = default_port(files)
    jobs = {j.get("job_name"): j for j in p.get("scrape_configs") or []}
    job = jobs.get("wmserve")
    if not job:
        return ["prometheus.yml: no scrape job 'wmserve'"]
    extra_labels = target_labels(p)
    if job.get("metrics_path", "/metrics") != "/metrics":
        errs.append("prometheus.yml: job wmserve does not scrape /metrics")
    targets = set()
    for sc in job.get("static_configs") or []:
        targets |= set(sc.get("targets") or [])
    want = {"%s:%s" % (n, port) for n in wm}
    for t in sorted(want - targets):
        errs.append("prometheus.yml: wmserve instance %s is not scraped" % t)
    for t in sorted(targets - want):
        errs.append("prometheus.yml: target %s is not a wmserve service of compose.yaml" % t)
    for j in jobs.values():
        for sc in j.get("static_configs") or []:
            for t in sc.get("targets") or []:
                if t.partition(":")[0] not in (c.get("services") or {}):
                    errs.append("prometheus.yml: target %s is not a compose service" % t)
    mounted_rules = roles.get("prometheus-alerts.yml")
    rule_files = p.get("rule_files") or []
    if not mounted_rules or mounted_rules[1] not in rule_files:
        errs.append("prometheus.yml: rule_files %s does not name where compose mounts the rules"
                    % rule_files)
    rules = load_yaml(files, "docker/prometheus-alerts.yml")
    n_rules = 0
    for g in rules.get("groups") or []:
        for r in g.get("rules") or []:
            n_rules += 1
            where = "prometheus-alerts.yml %s" % (r.get("alert") or r.get("record"))
            errs += promql_errors(str(r.get("expr", "")), facts, extra_labels, where)
    if n_rules == 0:
        errs.append("prometheus-alerts.yml: no rules")
    return errs


REQUIRED_IN_DASHBOARD = ["wmserve_sessions_active", "wmserve_sessions_queued",
                         "wmserve_frames_sent_total", "wmserve_underruns_total",
                         "wmserve_input_to_frame_seconds_bucket", "wmserve_block_seconds_bucket",
                         "wmserve_errors_total", "wmserve_jpeg_queue_frames"]


def check_grafana(files, facts):
    errs = []
    _, c, wm, roles = check_compose(files, facts)
    ds_dir = "docker/grafana/provisioning/datasources"
    db_dir = "docker/grafana/provisioning/dashboards"
    uids = set()
    prov = []
    for d in (ds_dir, db_dir):
        full = os.path.join(files.root, d)
        names = sorted(set(os.listdir(full) if os.path.isdir(full) else []) |
                       {os.path.basename(k) for k in files.over if os.path.dirname(k) == d})
        for nm in names:
            if nm.endswith((".yaml", ".yml")) and files.exists(os.path.join(d, nm)):
                prov.append((d, load_yaml(files, os.path.join(d, nm))))
    for d, doc in prov:
        for ds in (doc or {}).get("datasources") or []:
            if ds.get("type") == "prometheus":
                uids.add(ds.get("uid"))
                host = re.sub(r"^https?://", "", str(ds.get("url", ""))).partition(":")[0]
                if host not in (c.get("services") or {}):
                    errs.append("grafana datasource url %s is not a compose service" %
                                ds.get("url"))
    if not uids:
        errs.append("grafana provisioning: no Prometheus datasource")
    paths = [pr.get("options", {}).get("path") for d, doc in prov
             for pr in (doc or {}).get("providers") or []]
    dash_mount = roles.get("grafana/dashboards")
    if not dash_mount or dash_mount[1] not in paths:
        errs.append("grafana dashboard provider path %s is not where compose mounts "
                    "grafana/dashboards" % paths)
    prov_mount = roles.get("grafana/provisioning")
    if not prov_mount or prov_mount[1] != "/etc/grafana/provisioning":
        errs.append("grafana/provisioning is not mounted at /etc/grafana/provisioning")
    try:
        dash = json.loads(files.read("docker/grafana/dashboards/wmserve.json"))
    except ValueError as e:
        return errs + ["grafana/dashboards/wmserve.json: not JSON: %s" % e]
    extra = target_labels(load_yaml(files, "docker/prometheus.yml"))
    panels = dash.get("panels") or []
    if len(panels) < 8:
        errs.append("wmserve.json: %d panels; expected the sessions, fps, deadline misses, "
                    "latency, queue and error panels" % len(panels))
    used = set()
    boxes = []
    ids = set()
    for pnl in panels:
        t = pnl.get("title", "?")
        if pnl.get("id") in ids:
            errs.append("wmserve.json: duplicate panel id %s" % pnl.get("id"))
        ids.add(pnl.get("id"))
        g = pnl.get("gridPos") or {}
        box = (g.get("x", 0), g.get("y", 0), g.get("w", 0), g.get("h", 0))
        for b in boxes:
            if box[0] < b[0] + b[2] and b[0] < box[0] + box[2] and \
                    box[1] < b[1] + b[3] and b[1] < box[1] + box[3]:
                errs.append("wmserve.json: panel %r overlaps another" % t)
        boxes.append(box)
        targets = pnl.get("targets") or []
        if not targets:
            errs.append("wmserve.json: panel %r has no query" % t)
        for tg in [pnl] + targets:
            ds = tg.get("datasource")
            if isinstance(ds, dict) and ds.get("uid") not in uids:
                errs.append("wmserve.json: panel %r uses datasource uid %s, not provisioned" %
                            (t, ds.get("uid")))
        for tg in targets:
            expr = tg.get("expr", "")
            errs += promql_errors(expr, facts, extra, "wmserve.json %r" % t)
            used |= wmserve_metric_names(expr)
    for v in (dash.get("templating") or {}).get("list") or []:
        ds = v.get("datasource")
        if isinstance(ds, dict) and ds.get("uid") not in uids:
            errs.append("wmserve.json variable %s uses datasource uid %s, not provisioned" %
                        (v.get("name"), ds.get("uid")))
        q = v.get("query")
        q = q.get("query", "") if isinstance(q, dict) else str(q or "")
        for n in wmserve_metric_names(q):
            if n not in facts.series:
                errs.append("wmserve.json variable %s: metric %s is not exported" %
                            (v.get("name"), n))
    for n in REQUIRED_IN_DASHBOARD:
        if n not in used:
            errs.append("wmserve.json: no panel shows %s" % n)
    return errs


def check_compose_only(files, facts):
    return check_compose(files, facts)[0]


CHECKS = [("dockerfile", check_dockerfile), ("dockerignore", check_dockerignore),
          ("compose", check_compose_only), ("haproxy", check_haproxy),
          ("prometheus", check_prometheus), ("grafana", check_grafana)]


def run_checks(files):
    results = {}
    try:
        facts = Facts(files)
    except CheckError as e:
        return {"facts": [str(e)]}
    for name, fn in CHECKS:
        try:
            results[name] = fn(files, facts)
        except CheckError as e:
            results[name] = [str(e)]
        except (KeyError, TypeError, AttributeError, IndexError) as e:
            results[name] = ["%s: unexpected structure (%s: %s)" % (name, type(e).__name__, e)]
    return results


# ---- linters -----------------------------------------------------------------------------------

YAML_FILES = ["docker/compose.yaml", "docker/prometheus.yml", "docker/prometheus-alerts.yml",
              "docker/yamllint.yaml", "docker/grafana/provisioning/datasources/prometheus.yaml",
              "docker/grafana/provisioning/dashboards/wmserve.yaml"]


def run_yamllint(root, tmp):
    exe = shutil.which("yamllint")
    if not exe:
        return None, "yamllint not installed (scripts/setup-debian.sh installs it)"
    cfg = os.path.join(root, "docker/yamllint.yaml")
    r = subprocess.run([exe, "-s", "-c", cfg] + [os.path.join(root, f) for f in YAML_FILES],
                       capture_output=True, text=True)
    if r.returncode != 0:
        return False, "yamllint: " + (r.stdout + r.stderr).strip()
    bad = os.path.join(tmp, "bad.yaml")
    with open(bad, "w") as f:
        f.write("a: 1\na: 2\n  b: [\n")
    r2 = subprocess.run([exe, "-s", "-c", cfg, bad], capture_output=True, text=True)
    if r2.returncode == 0:
        return False, "yamllint accepted a broken file: the check cannot fail"
    return True, "yamllint -s: %d files clean (a broken control file is rejected)" % len(YAML_FILES)


def run_haproxy(root, tmp):
    exe = shutil.which("haproxy") or (os.path.exists("/usr/sbin/haproxy") and "/usr/sbin/haproxy")
    if not exe:
        return None, "haproxy not installed (scripts/setup-debian.sh installs it)"
    cfg = os.path.join(root, "docker/haproxy.cfg")
    r = subprocess.run([exe, "-c", "-f", cfg], capture_output=True, text=True)
    out = r.stdout + r.stderr
    warns = [x for x in out.split("\n") if "[WARNING]" in x or "[ALERT]" in x]
    other = [x for x in warns if "could not resolve address" not in x]
    if r.returncode != 0 or other:
        return False, "haproxy -c: rc=%d\n%s" % (r.returncode, out.strip())
    bad = os.path.join(tmp, "bad.cfg")
    with open(cfg) as f, open(bad, "w") as g:
        g.write(f.read().replace("balance leastconn", "balance no-such-algorithm"))
    r2 = subprocess.run([exe, "-c", "-f", bad], capture_output=True, text=True)
    if r2.returncode == 0:
        return False, "haproxy -c accepted a broken config: the check cannot fail"
    ver = re.search(r"version is (\S+)", out)
    return True, "haproxy -c (%s): valid, %d unresolvable-server warnings (expected offline); a " \
                 "broken control config is rejected" % (ver.group(1) if ver else "?", len(warns))


# ---- mutation self-test ------------------------------------------------------------------------

MUTATIONS = [
    ("dockerfile", "docker/Dockerfile", "USER 10001:10001\n", ""),
    ("dockerfile", "docker/Dockerfile", "USER 10001:10001", "USER root"),
    ("dockerfile", "docker/Dockerfile", "HEALTHCHECK ", "# HEALTHCHECK "),
    ("dockerfile", "docker/Dockerfile", "WORKDIR /src\n",
     "WORKDIR /src\nADD https://example.com/x.tar.gz /tmp/\n"),
    ("dockerfile", "docker/Dockerfile", "13.0.2-runtime-ubuntu24.04", "13.0.1-runtime-ubuntu24.04"),
    ("dockerfile", "docker/Dockerfile", "nvidia/cuda:13.0.2-runtime-ubuntu24.04",
     "nvidia/cuda:latest"),
    ("dockerfile", "docker/Dockerfile", "WMSERVE_BIND=0.0.0.0", "WMSERVE_BIND_ADDR=0.0.0.0"),
    ("dockerfile", "docker/Dockerfile", "libuv1t64 libwebsockets19t64 libwebsockets-evlib-uv",
     "libuv1t64 libwebsockets19t64"),
    ("dockerfile", "docker/Dockerfile", "libturbojpeg libjpeg-turbo8",
     "libturbojpeg0-dev libjpeg-turbo8"),
    ("dockerfile", "docker/Dockerfile", "libpng-dev", "libpng16-16t64"),
    ("dockerfile", "docker/Dockerfile", " --target wmserve wmgen",
     " --target wmserve wmgen && ctest"),
    ("dockerfile", "scripts/setup-debian.sh", "libpng-dev", "libpng-dev libfoo-dev"),
    ("dockerignore", ".dockerignore", "tmp/\n", "tmp/\nengine\n"),
    ("grafana", "docker/grafana/dashboards/wmserve.json", "wmserve_underruns_total",
     "wmserve_underrun_total"),
    ("grafana", "docker/grafana/dashboards/wmserve.json", "sum by (le) (rate(wmserve_input",
     "sum by (instance) (rate(wmserve_input"),
    ("grafana", "docker/grafana/dashboards/wmserve.json", "sum(wmserve_sessions_queued",
     "sum(rate(wmserve_sessions_queued"),
    ("grafana", "docker/grafana/dashboards/wmserve.json", "rate(wmserve_blocks_total",
     "(wmserve_blocks_total"),
    ("grafana", "docker/grafana/dashboards/wmserve.json", '"panels": [', '"panels": [,'),
    ("grafana", "docker/grafana/dashboards/wmserve.json", '"uid": "wmserve-prometheus"',
     '"uid": "other"'),
    ("grafana", "server/metrics.c", '"wmserve_frames_sent_total"', '"wmserve_frames_out_total"'),
    ("prometheus", "docker/prometheus-alerts.yml", 'code=~"engine|internal"',
     'code=~"engine|internl"'),
    ("prometheus", "docker/prometheus-alerts.yml", "sum by (instance) (wmserve_sessions_queued)",
     "sum by (instance) (wmserve_sessions_queued{stage=\"dit\",gpu_id=\"0\"})"),
    ("prometheus", "docker/prometheus.yml", '"wmserve-gpu1:8080"', '"wmserve-gpu9:8080"'),
    ("compose", "docker/compose.yaml", "WMSERVE_FPS:", "WMSERVE_FRAMES:"),
    ("compose", "server/config.c", '"WMSERVE_MAX_QUEUE"', '"WMSERVE_QUEUE_MAX"'),
    ("compose", "docker/compose.yaml", "./haproxy.cfg:", "./haproxy2.cfg:"),
    ("compose", "docker/compose.yaml", 'device_ids: ["1"]', 'device_ids: ["0"]'),
    ("compose", "docker/compose.yaml", "./models}:/models:ro", "./models}:/models"),
    ("compose", "docker/compose.yaml", "image: prom/prometheus:v3.5.0", "image: prom/prometheus"),
    ("compose", "docker/compose.yaml", "  wmserve-gpu1:\n", "  wmserve-gpu1:\n  bad\n"),
    ("haproxy", "docker/haproxy.cfg", "    timeout tunnel 1h\n", ""),
    ("haproxy", "docker/haproxy.cfg", "    server gpu1 wmserve-gpu1:8080 cookie gpu1\n", ""),
    ("haproxy", "docker/haproxy.cfg", "cookie gpu1", "cookie gpu0"),
    ("haproxy", "docker/haproxy.cfg", "uri /healthz", "uri /"),
]


def _errors(res):
    return {(k, e) for k, errs in res.items() for e in errs}


def self_test(root):
    """Each mutation must add an error, from the check it targets, to those of the clean run."""
    failures = []
    base = Files(root)
    clean = _errors(run_checks(base))
    for check, rel, old, new in MUTATIONS:
        text = base.read(rel)
        label = "%s: %s %r -> %r" % (check, rel, old.strip()[:40], new.strip()[:40])
        if old not in text:
            failures.append("stale mutation (text not found): " + label)
            continue
        new_errs = _errors(run_checks(Files(root, {rel: text.replace(old, new, 1)}))) - clean
        if not any(k in (check, "facts") for k, _ in new_errs):
            failures.append("not detected: " + label)
    return failures


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--root", default=os.path.join(here, ".."), help="repository root")
    args = ap.parse_args()
    root = os.path.abspath(args.root)
    passed = failed = skipped = 0

    res = run_checks(Files(root))
    for name, errs in res.items():
        if errs:
            failed += 1
            print("FAIL %s" % name)
            for e in errs:
                print("     %s" % e)
        else:
            passed += 1
            print("ok   %s" % name)
    with tempfile.TemporaryDirectory() as tmp:
        for name, fn in (("yamllint", run_yamllint), ("haproxy -c", run_haproxy)):
            ok, msg = fn(root, tmp)
            if ok is None:
                skipped += 1
                print("SKIP %s: %s" % (name, msg))
            elif ok:
                passed += 1
                print("ok   %s" % msg)
            else:
                failed += 1
                print("FAIL %s" % msg)
    st = self_test(root)
    if st:
        failed += 1
        print("FAIL self-test: %d of %d mutations" % (len(st), len(MUTATIONS)))
        for s in st:
            print("     %s" % s)
    else:
        passed += 1
        print("ok   self-test: each of %d mutations is caught by the check it targets" %
              len(MUTATIONS))
    print("%d passed, %d failed, %d skipped" % (passed, failed, skipped))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
