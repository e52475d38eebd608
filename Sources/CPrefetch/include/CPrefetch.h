#ifndef EXPERT_CPREFETCH_H
#define EXPERT_CPREFETCH_H

// A prefetch hint, which Swift cannot express: asks the CPU to bring the cache line holding
// `address` into all cache levels for reading. Never faults, whatever the address (the codec
// still only passes addresses inside the buffer it reads). Inlined into Swift callers.
static inline void expert_prefetch(const void *address) {
    __builtin_prefetch(address, 0, 3);
}

#endif
