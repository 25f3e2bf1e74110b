#!/bin/bash
# The LLVM modules that took longest to compile in bench_conv's program (XLA's own log):
#   benchmarks/cpu-runs/2026-11-28-session18/llvm_top.sh LAYER DTYPE METHOD DIRECTION [TOP]
# Prints the program's compile line, then ms a module (largest first) and their sum (two
# compile threads on this machine: the sum is about twice the wall time).
cd "$(dirname "$0")/../../.." || exit 1
TF_CPP_MIN_LOG_LEVEL=0 TF_CPP_VMODULE=ir_compiler=2,cpu_compiler=2 JAX_NUM_CPU_DEVICES=1 \
  python benchmarks/cpu-runs/2026-11-28-session18/hlo.py "$1" "$2" "$3" "$4" 2>&1 |
  sed -E -n '/Running HLO passes on \[jit_(_lambda|loss)\]/,$p' |
  grep "Compiled LLVM module\|Compiling \[jit_" > /tmp/llvm_top.txt
grep "Compiling \[" /tmp/llvm_top.txt | sed 's/.*Compiling/Compiling/'
grep "Compiled LLVM" /tmp/llvm_top.txt |
  sed 's/.*module: __compute_module_//; s/_kernel_module time:/ /; s/ (.*//' |
  awk '{v=$2; if ($3=="s") v*=1000; sum+=v; print v, $1} END {print sum, "TOTAL ms"}' |
  sort -n -r | head -"${5:-15}"
