#!/usr/bin/env python3
"""Top functions of a callgrind file by self cost; optionally the callers of some functions
(argv[3], comma-separated substrings) and inclusive costs of functions matching a regex
(argv[4]). usage: callgrind_top.py FILE [TOP] [CALLEES] [REGEX]"""
import sys, re, collections
path = sys.argv[1]; top = int(sys.argv[2]) if len(sys.argv) > 2 else 40
names = {}
def name(kind, v):
    m = re.match(r'\((\d+)\)(?:\s+(.*))?', v)
    if not m: return v
    k = (kind, m.group(1))
    if m.group(2): names[k] = m.group(2)
    return names.get(k, v)
selfc = collections.Counter(); incl = collections.Counter()
fn = None; in_call = False; cfn = None
for line in open(path):
    line = line.rstrip('\n')
    if line.startswith('fn='): fn = name('fn', line[3:]); continue
    if line.startswith('cfn='): cfn = name('fn', line[4:]); continue
    if line.startswith(('fl=','fi=','fe=','cfi=','cfl=','ob=','cob=')):
        kind = line.split('=')[0]; kind = {'fi':'fl','fe':'fl','cfi':'fl','cfl':'fl','cob':'ob'}.get(kind, kind)
        name(kind, line.split('=',1)[1]); continue
    if line.startswith('calls='): in_call = True; continue
    if line and (line[0].isdigit() or line[0] in '+-*'):
        parts = line.split()
        if len(parts) < 2: continue
        c = int(parts[1])
        if in_call:
            incl[(fn, cfn)] += c; in_call = False
        else:
            selfc[fn] += c
tot = sum(selfc.values())
print(f"total {tot}")
for f, c in selfc.most_common(top):
    print(f"{c:>12} {100*c/tot:5.1f}%  {f[:160]}")
if len(sys.argv) > 3:
    for target in filter(None, sys.argv[3].split(',')):
        print(f"\n== callers of {target}")
        rows = [(c, f) for (f, cf), c in incl.items() if cf and target in cf]
        for c, f in sorted(rows, reverse=True)[:15]:
            print(f"{c:>12}  {f[:170]}")
if len(sys.argv) > 4:
    inc = collections.Counter()
    for (f, cf), c in incl.items():
        if cf != f: inc[cf] += c
    print("\n== inclusive (callee sums) matching", sys.argv[4])
    for f, c in inc.most_common():
        if re.search(sys.argv[4], f or ''):
            print(f"{c:>12} {100*c/tot:5.1f}%  {f[:170]}")
