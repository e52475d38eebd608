#!/usr/bin/env python3
"""The chosen compact model (per block: per column ids or slot deltas with a repeat-previous-token
escape symbol, static quantized tables, own or shared per (kind, slot) group, table bits counted).
Usage: compact_scheme.py TRACE.npy BLOCK_ROWS..."""
import sys, math, numpy as np
def gamma(x): return 2*np.floor(np.log2(x))+1
def expg(x,k): # exp-golomb of x>=0 with k
    return 2*np.floor(np.log2((x>>k)+1))+1+k
def quant(counts, scale):
    total=counts.sum()
    f=np.where(counts>0, np.maximum(1,(counts*(1<<scale))//total),0).astype(np.int64)
    f[np.argmax(counts)] += (1<<scale)-f.sum()
    return f
def table_cost(f):
    idx=np.nonzero(f)[0]
    gaps=np.diff(np.concatenate([[-1],idx]))
    fb=min(expg(f[idx]-1,k).sum() for k in range(8))
    return float(gamma(gaps).sum()+fb+3+4+gamma(len(idx)))
def pick_scale(counts):
    N=counts.sum(); d=(counts>0).sum()
    s=max(1,math.ceil(math.log2(max(N,2))))
    s=min(12,s)
    while (1<<s)<d: s+=1
    return s
def cost_with(counts, f, scale):
    p=counts>0
    return -(counts[p]*np.log2(f[p]/(1<<scale))).sum()
def own(counts):
    if (counts>0).sum()<=1: return 16.0, None
    s=pick_scale(counts); f=quant(counts,s)
    return cost_with(counts,f,s)+table_cost(f), (f,s)
def block_cost(block,E,share=True):
    B,L,K=block.shape; cols=block.reshape(B,L*K).T.astype(np.int64); C=L*K
    prev=np.concatenate([np.full((C,1),-1),cols[:,:-1]],axis=1); rep=cols==prev
    hists=[];keys=[]
    bits=8*C  # mode + table ref bytes
    for c in range(C):
        a=np.where(rep[c],E,cols[c]); ha=np.bincount(a,minlength=E+1)
        if c%K:
            d=np.where(rep[c],E,(cols[c]-cols[c-1])%E); hd=np.bincount(d,minlength=E+1)
            if own(hd)[0]<own(ha)[0]: hists.append(hd); keys.append(('d',c%K)); continue
        hists.append(ha); keys.append(('i',c%K))
    if not share:
        return bits+sum(own(h)[0] for h in hists)
    groups={}
    for c,k in enumerate(keys): groups.setdefault(k,[]).append(c)
    for k,cs in groups.items():
        H=sum(hists[c] for c in cs)
        if (H>0).sum()<=1:
            bits+=sum(own(hists[c])[0] for c in cs); continue
        s=pick_scale(H); f=quant(H,s)
        # each column: own or shared
        used=False; tot=0
        for c in cs:
            o=own(hists[c])[0]; sh=cost_with(hists[c],f,s) if (f[hists[c]>0]>0).all() else 1e18
            if sh<o: tot+=sh; used=True
            else: tot+=o
        bits+=tot+(table_cost(f) if used else 0)
    return bits
ids=np.load(sys.argv[1]); n,L,K=ids.shape; E=1<<math.ceil(math.log2(int(ids.max())+1)); raw=n*L*K*4
for B in [int(x) for x in sys.argv[2:]]:
    for share in (False,True):
        tot=sum(block_cost(ids[s:s+B],E,share) for s in range(0,n,B))
        print(B,'share' if share else 'own', round(raw/(tot/8),3), round(tot/(n*L*K),3))
