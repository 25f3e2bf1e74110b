#!/bin/bash
# alternate default and glibc-settings runs of the bench on the large-temporary layers + a control
L="lesson resnet7 dcgan resnet28"
for r in 1 2; do
  JAX_NUM_CPU_DEVICES=1 python experiments/bench_conv.py --layers $L --dtypes float32 --methods auto xla --repeats 7 --out benchmarks/cpu-runs/2026-11-27-session12/allocator_default_$r > benchmarks/cpu-runs/2026-11-27-session12/allocator_default_$r.txt 2>&1
  MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=4294967296 MALLOC_ARENA_MAX=1 JAX_NUM_CPU_DEVICES=1 python experiments/bench_conv.py --layers $L --dtypes float32 --methods auto xla --repeats 7 --out benchmarks/cpu-runs/2026-11-27-session12/allocator_malloc_$r > benchmarks/cpu-runs/2026-11-27-session12/allocator_malloc_$r.txt 2>&1
done
