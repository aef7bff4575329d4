#!/usr/bin/env python3
"""Lists the pairs of sibling modules of a crate that refer to each other
(outside comments, strings and `mod tests`), and exits 1 if there is one.

A parent module (its mod.rs or lib.rs) may refer to its children and they
to it: that pair is not a circle here (the parent holds what they share).
Usage: scripts/circles.py CRATE/src [CRATE/src ...]
"""
import re, os, sys


def circles(root):
    mods = {}
    for dp, dn, fn in os.walk(root):
        for f in fn:
            if not f.endswith('.rs'): continue
            p = os.path.join(dp, f)
            rel = os.path.relpath(p, root)[:-3].split(os.sep)
            if rel[-1] in ('mod', 'lib', 'main'): rel = rel[:-1]
            if rel and rel[-1] == 'tests': continue
            if 'bin' in rel: continue
            mods[tuple(rel)] = p
    def strip_tests(t):
        i = t.find('#[cfg(test)]\nmod tests {')
        return t if i < 0 else t[:i]
    def resolve(cur, path):
        parts = path.split('::')
        if parts[0] == 'crate': base = []; parts = parts[1:]
        elif parts[0] == 'super':
            base = list(cur)
            while parts and parts[0] == 'super':
                base = base[:-1]; parts = parts[1:]
        elif parts[0] == 'self': base = list(cur); parts = parts[1:]
        else: return None
        m = tuple(base)
        for x in parts:
            if tuple(list(m) + [x]) in mods: m = tuple(list(m) + [x])
            else: break
        return m
    edges = {}
    for m, p in mods.items():
        t = strip_tests(open(p).read())
        t = '\n'.join(l for l in t.split('\n') if not l.lstrip().startswith('//'))
        t = re.sub(r'"(?:[^"\\]|\\.)*"', '""', t)
        refs = set()
        for mm in re.finditer(r'\b((?:crate|super|self)(?:::[A-Za-z_][A-Za-z_0-9]*)+)', t):
            r = resolve(m, mm.group(1))
            if r is not None and r != m: refs.add(r)
        # use super::{a, b} groups
        for mm in re.finditer(r'use (crate|super)::\{([^}]*)\}', t):
            for x in mm.group(2).split(','):
                x = x.strip().split('::')[0].split(' ')[0]
                if x and x != 'self':
                    r = resolve(m, mm.group(1) + '::' + x)
                    if r is not None and r != m: refs.add(r)
        edges[m] = refs
    pairs = set()
    for a, rs in edges.items():
        for b in rs:
            # a refers to b (or into b's subtree); b refers back to a
            related = a[:len(b)] == b or b[:len(a)] == a
            if a in edges.get(b, set()) and not related:
                pairs.add(tuple(sorted(['::'.join(a) or 'crate', '::'.join(b) or 'crate'])))
    return sorted(pairs)


if __name__ == "__main__":
    found = False
    for root in sys.argv[1:]:
        for a, b in circles(root):
            print(f"{root}: {a} <-> {b}")
            found = True
    sys.exit(1 if found else 0)
