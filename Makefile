# rattn: reference RATTENTION in C++ (Eigen) and CUDA.
#
#   make             build the programs into bin/
#   make train       the main job: train RATTENTION and SWA side by side (see README)
#   make test        build and run every test; ends with "N passed, N failed"
#   make test-portable   the CPU-layer kernel tests built for any x86-64 (ARCH=), in build/portable
#   make bench       benchmarks (not tests)
#   make gpu-check   on a machine with an NVIDIA GPU: native tests, compute-sanitizer, benchmarks
#   make exercise E=NAME   one workshop exercise (exercises/, docs/workshop.md); make exercise-solutions (CI)
#   make test-python the Python package (python/, docs/python.md): build it into build/python/venv, run its
#                    pytest suite; make test runs it too when scripts/deps_python.sh finds its dependencies
#
# Builds run in parallel on every core unless a -j is given (make -j1 for a serial build), and print
# one short line per file; V=1 prints the full compiler command lines.
#
# Layout of what is built:
#   bin/train_tiny bin/infer bin/rattn-op     the programs
#   bin/tests/test_X                           one binary per tests/test_X.cpp (CPU reference)
#   bin/tests/emu/test_X                       one per tests/cuda/test_X.cpp, kernels on the CPU execution layer
#   bin/tests/gpu/test_X                       the same test source against the nvcc-built kernels (needs nvcc)
# No fast-math flags anywhere: every tolerance in the tests assumes IEEE arithmetic.

# Only in the top-level make: a sub-make ($(MAKE) in a recipe) shares its parent's job server, and forcing
# -j there printed "warning: -j2 forced in makefile: resetting jobserver mode" before every make test.
ifeq ($(MAKELEVEL),0)
ifeq ($(filter -j%,$(MAKEFLAGS)),)
  MAKEFLAGS += -j$(shell nproc 2>/dev/null || echo 2)
endif
endif
ifeq ($(V),1)
  Q :=
  say = @true
else
  Q := @
  say = @printf '  %-6s %s\n'
endif

CXX      ?= g++
# OPT: -O3 inlines the Eigen block expressions of the row loops (norms, RoPE, feature maps) that -O2 leaves as
# calls: the training step about 10 % less CPU time, for about 10 % more compile time (docs/performance.md).
# Same arithmetic as -O2 (no fast-math): training is the same bit for bit.
OPT      ?= -O3
# TEST_OPT: the test files' own optimisation. They instantiate ref/ in double for the finite-difference
# checks and drive the programs, libraries and kernels (built with OPT); -O1 compiles them about a quarter
# faster than -O3 (tests/test_rattention.cpp: 79 s against 109 s), and the sanitizer builds have always
# run the whole suite at -O1.
TEST_OPT ?= -O1
# ARCH: the CPU the programs are built for. Default -march=native (when the compiler takes it): Eigen then uses
# AVX2/AVX-512 with FMA, 2-4x faster training than the SSE2 baseline (docs/performance.md). The programs run on
# this machine's kind of CPU; `make ARCH=` builds for any x86-64. The flags are recorded in $(BUILD)/.flags, and
# a change of flags rebuilds everything (objects built for different vector widths must never be mixed).
ARCH     ?= $(shell $(CXX) -march=native -E -x c++ /dev/null >/dev/null 2>&1 && echo -march=native)
# DEBUG: -g1 (line tables: backtraces, perf and sanitizer reports name file:line) costs a third less compile time
# than -g on the Eigen-heavy sources (test_model.cpp: 47 s against 77 s); `make DEBUG=-g` for variables in gdb.
DEBUG    ?= -g1
# -Wno-restrict: at -O3 GCC 12 warns falsely on std::string concatenation (GCC bug 105329; 6 warnings in tests/).
CXXFLAGS := -std=c++20 $(OPT) $(ARCH) $(DEBUG) -Wall -Wextra -Wno-restrict -fopenmp -I. -isystem /usr/include/eigen3 $(EXTRA_CXXFLAGS)
LDFLAGS  := -fopenmp $(EXTRA_LDFLAGS)
DEPFLAGS  = -MMD -MP

# SANITIZE=1: AddressSanitizer + UndefinedBehaviorSanitizer build, in its own folders. Built -O1 -g1
# (they override OPT and -g; reports still name file:line) and without UBSan's `null` and `alignment`
# checks (UBSAN_SKIP): on the Eigen-heavy code those two checks alone double the compile time. ASan
# still reports every null dereference, and `make fuzz` runs the file parsers with every UBSan check.
# `make test-sanitize UBSAN_SKIP=` builds with every check (about 1.8x the compile time).
UBSAN_SKIP ?= null,alignment
ifeq ($(SANITIZE),1)
  CXXFLAGS += -O1 -g1 -fsanitize=address,undefined $(if $(UBSAN_SKIP),-fno-sanitize=$(UBSAN_SKIP)) \
              -fno-omit-frame-pointer -fno-sanitize-recover=undefined
  LDFLAGS  += -fsanitize=address,undefined
  BUILD ?= build/asan
  BIN   ?= bin/asan
endif
# TSAN=1: ThreadSanitizer build (build/tsan, bin/tsan), -O1 -g1 (half the compile time of -O2 -g). On
# the CPU execution layer each CUDA thread is a fiber TSan knows, so two threads touching shared memory
# with no barrier between is a data race.
ifeq ($(TSAN),1)
  CXXFLAGS += -O1 -g1 -fsanitize=thread
  LDFLAGS  += -fsanitize=thread
  BUILD ?= build/tsan
  BIN   ?= bin/tsan
endif
BUILD ?= build
BIN   ?= bin

# nvcc: found on PATH or in the usual toolkit folder; its absence is reported, never fatal.
NVCC := $(shell command -v nvcc 2>/dev/null || ls /usr/local/cuda/bin/nvcc 2>/dev/null)
CUDA_HOME := $(patsubst %/bin/nvcc,%,$(NVCC))
CUDA_ARCH ?= sm_90
NVCCFLAGS := -std=c++17 -O2 -lineinfo -arch=$(CUDA_ARCH) -I. -Werror all-warnings -Xcompiler -Wall
ifeq ($(NVCC_VERBOSE),1)
  NVCCFLAGS += -Xptxas -v
endif

# MPI (OpenMPI from the distribution: scripts/deps.sh): found with pkg-config (ompi-c) or mpicxx --showme. When
# found, model/mpi_job.cpp is compiled with RATTN_MPI and bin/train_tiny alone links MPI, so that
# `mpirun -np N bin/train_tiny` trains data parallel (docs/scaling.md); otherwise the plain one-process
# program (said once by `make`). MPI=0 builds without it even when present; so do the sanitizer builds: OpenMPI
# keeps thousands of start-up allocations until exit, which LeakSanitizer reports as leaks in every rank
# (tests/test_mpi.cpp says SKIPPED there; tests/test_tree_reduce.cpp checks the MPI-free part under ASan).
ifneq ($(SANITIZE)$(TSAN),)
  MPI := 0
endif
MPI ?= 1
ifeq ($(MPI),1)
  MPI_CFLAGS := $(shell pkg-config --cflags ompi-c 2>/dev/null)
  MPI_LIBS   := $(shell pkg-config --libs ompi-c 2>/dev/null)
  ifeq ($(MPI_LIBS),)
    MPI_CXX    := $(shell command -v mpicxx 2>/dev/null)
    MPI_CFLAGS := $(if $(MPI_CXX),$(shell $(MPI_CXX) --showme:compile 2>/dev/null))
    MPI_LIBS   := $(if $(MPI_CXX),$(shell $(MPI_CXX) --showme:link 2>/dev/null))
  endif
endif
MPI_DEFS := $(if $(MPI_LIBS),-DRATTN_MPI $(MPI_CFLAGS))

# NCCL (the GPU build of train_tiny moves device gradients between GPUs with it: model/device_reduce.h):
# nccl.h and libnccl.so under NCCL_HOME, by default the CUDA toolkit's (the pip wheel nvidia-nccl-cu13
# has the same two files: NCCL_HOME=.../site-packages/nvidia/nccl). Not found: bin/gpu/train_tiny runs one
# process per job and says so under mpirun.
NCCL_HOME ?= $(CUDA_HOME)
NCCL_LIBDIR := $(firstword $(foreach d,lib64 lib,$(if $(wildcard $(NCCL_HOME)/$(d)/libnccl.so*),$(NCCL_HOME)/$(d))))
NCCL_FOUND := $(and $(NVCC),$(wildcard $(NCCL_HOME)/include/nccl.h),$(NCCL_LIBDIR))
NCCL_DEFS := $(if $(NCCL_FOUND),-DRATTN_NCCL -isystem $(NCCL_HOME)/include)
comma := ,
NCCL_LIBS := $(if $(NCCL_FOUND),-L$(NCCL_LIBDIR) -lnccl -Wl$(comma)-rpath$(comma)$(NCCL_LIBDIR))

# ---- sources ----------------------------------------------------------------------------------
LIB_SRCS   := $(wildcard model/*.cpp data/*.cpp io/*.cpp)
LIB_OBJS   := $(patsubst %.cpp,$(BUILD)/%.o,$(LIB_SRCS))
CUDA_SRCS  := $(wildcard cuda/*.cu tests/cuda/*.cu)  # tests/cuda/*.cu: kernels only tests use
EMU_OBJS   := $(patsubst %.cu,$(BUILD)/emu/%.o,$(CUDA_SRCS))
GPU_OBJS   := $(patsubst %.cu,$(BUILD)/gpu/%.o,$(CUDA_SRCS))
PROGRAMS   := $(patsubst %.cpp,$(BIN)/%,$(wildcard *.cpp) $(notdir $(wildcard tools/*.cpp)))
TEST_SRCS  := $(wildcard tests/test_*.cpp)
TESTS      := $(patsubst tests/%.cpp,$(BIN)/tests/%,$(TEST_SRCS))
CUTEST_SRCS:= $(wildcard tests/cuda/test_*.cpp)
EMU_TESTS  := $(patsubst tests/cuda/%.cpp,$(BIN)/tests/emu/%,$(CUTEST_SRCS))
GPU_TESTS  := $(patsubst tests/cuda/%.cpp,$(BIN)/tests/gpu/%,$(CUTEST_SRCS))
GPU_TRAIN  := $(if $(NVCC),$(BIN)/gpu/train_tiny)
ifeq ($(NVCC),)
  GPU_TESTS :=
endif
ifeq ($(SANITIZE),1)
  GPU_TESTS :=  # ASan's shadow memory and the CUDA driver do not mix: sanitize the CPU layer only
  GPU_TRAIN :=
  # no test runs the benchmarks but bench_train --config tiny (tests/test_device_train.cpp)
  PROGRAMS := $(filter-out $(filter-out $(BIN)/bench_train,$(filter $(BIN)/bench_%,$(PROGRAMS))),$(PROGRAMS))
endif

.PHONY: FORCE pareto pareto-quick all test test-portable portable-run deps train bench gpu-check gpu-build clean cuda-compile status tsan-test tsan-run test-sanitize fuzz
.DEFAULT_GOAL := all
all: status $(PROGRAMS)

status:
	@if [ -n "$(NVCC)" ]; then echo "make: nvcc found at $(NVCC): building CUDA kernels for the CPU execution layer and for $(CUDA_ARCH)"; \
	 else echo "make: nvcc not found: building CUDA kernels for the CPU execution layer only; skipping the nvcc build and GPU tests"; fi
ifeq ($(MPI),0)
	@echo "make: MPI off (MPI=0, or a sanitizer build): building train_tiny for one process only"
else ifeq ($(MPI_LIBS),)
	@echo "make: MPI not found: building train_tiny for one process only (no mpirun; apt-get install openmpi-bin \
	libopenmpi-dev, or scripts/deps.sh as root)"
else
	@echo "make: MPI found: bin/train_tiny also trains data parallel under mpirun (docs/scaling.md)"
endif
ifneq ($(NVCC),)
	@if [ -n "$(NCCL_FOUND)" ]; then echo "make: NCCL found in $(NCCL_HOME): bin/gpu/train_tiny all-reduces device gradients across GPUs"; \
	 else echo "make: NCCL not found in $(NCCL_HOME) (NCCL_HOME=...): bin/gpu/train_tiny --device cuda runs one GPU per job"; fi
endif

deps:
	@scripts/deps.sh

# ---- libraries --------------------------------------------------------------------------------
$(BUILD)/librattn.a: $(LIB_OBJS)
	@mkdir -p $(@D)
	$(say) AR $@
	$(Q)rm -f $@ && ar rcs $@ $^

$(BUILD)/libcuda_emu.a: $(EMU_OBJS)
	@mkdir -p $(@D)
	$(say) AR $@
	$(Q)rm -f $@ && ar rcs $@ $^

$(BUILD)/libcuda_gpu.a: $(GPU_OBJS)
	@mkdir -p $(@D)
	$(say) AR $@
	$(Q)rm -f $@ && ar rcs $@ $^

# Every object depends on the recorded flags: rewritten only when they change, so a change rebuilds.
FLAGS_STAMP := $(BUILD)/.flags
$(FLAGS_STAMP): FORCE
	@mkdir -p $(@D)
	@echo '$(CXX) $(CXXFLAGS) | tests $(TEST_OPT)' | cmp -s - $@ || echo '$(CXX) $(CXXFLAGS) | tests $(TEST_OPT)' > $@
FORCE:

$(BUILD)/%.o: %.cpp $(FLAGS_STAMP)
	@mkdir -p $(@D)
	$(say) CXX $<
	$(Q)$(CXX) $(CXXFLAGS) $(DEPFLAGS) -c $< -o $@

# The test files (tests/, tests/cuda/): TEST_OPT after the common flags (the more specific pattern wins).
$(BUILD)/tests/%.o: tests/%.cpp $(FLAGS_STAMP)
	@mkdir -p $(@D)
	$(say) CXX $<
	$(Q)$(CXX) $(CXXFLAGS) $(TEST_OPT) $(DEPFLAGS) -c $< -o $@

# The MPI job (model/mpi_job.h): its own flags, recorded like the others so that MPI appearing or going
# rebuilds it.
MPI_STAMP := $(BUILD)/.mpi
$(MPI_STAMP): FORCE
	@mkdir -p $(@D)
	@echo '$(MPI_DEFS) | $(MPI_LIBS)' | cmp -s - $@ || echo '$(MPI_DEFS) | $(MPI_LIBS)' > $@
$(BUILD)/model/mpi_job.o: model/mpi_job.cpp $(FLAGS_STAMP) $(MPI_STAMP)
	@mkdir -p $(@D)
	$(say) CXX "$< ($(if $(MPI_LIBS),with MPI,without MPI))"
	$(Q)$(CXX) $(CXXFLAGS) $(MPI_DEFS) $(DEPFLAGS) -c $< -o $@

# The same .cu source, compiled as C++ against the CPU execution layer (cuda/compat.h picks it).
$(BUILD)/emu/%.o: %.cu $(FLAGS_STAMP)
	@mkdir -p $(@D)
	$(say) CXX-CU $<
	$(Q)$(CXX) $(CXXFLAGS) $(DEPFLAGS) -x c++ -c $< -o $@

$(BUILD)/gpu/%.o: %.cu
	@mkdir -p $(@D)
	$(say) NVCC $<
	$(Q)$(NVCC) $(NVCCFLAGS) -MMD -MP -c $< -o $@

# ---- programs ---------------------------------------------------------------------------------
TOP_PROGRAMS  := $(patsubst %.cpp,$(BIN)/%,$(wildcard *.cpp))
TOOL_PROGRAMS := $(patsubst tools/%.cpp,$(BIN)/%,$(wildcard tools/*.cpp))
$(TOP_PROGRAMS): $(BIN)/%: $(BUILD)/%.o $(BUILD)/librattn.a $(BUILD)/libcuda_emu.a
	@mkdir -p $(@D)
	$(say) LINK $@
	$(Q)$(CXX) $^ -o $@ $(LDFLAGS) $(PROGRAM_LIBS)
# Only train_tiny joins an MPI job (its model/mpi_job.o is the one user of MPI).
$(BIN)/train_tiny: PROGRAM_LIBS = $(MPI_LIBS)

$(TOOL_PROGRAMS): $(BIN)/%: $(BUILD)/tools/%.o $(BUILD)/librattn.a $(BUILD)/libcuda_emu.a
	@mkdir -p $(@D)
	$(say) LINK $@
	$(Q)$(CXX) $^ -o $@ $(LDFLAGS)

# ---- tests ------------------------------------------------------------------------------------
$(TESTS): $(BIN)/tests/%: $(BUILD)/tests/%.o $(BUILD)/tests/doctest_main.o $(BUILD)/librattn.a $(BUILD)/libcuda_emu.a
	@mkdir -p $(@D)
	$(say) LINK $@
	$(Q)$(CXX) $^ -o $@ $(LDFLAGS)

$(EMU_TESTS): $(BIN)/tests/emu/%: $(BUILD)/tests/cuda/%.o $(BUILD)/tests/doctest_main.o $(BUILD)/libcuda_emu.a $(BUILD)/librattn.a
	@mkdir -p $(@D)
	$(say) LINK $@
	$(Q)$(CXX) $^ -o $@ $(LDFLAGS)

# The GPU variant of a CUDA test: the same host source, compiled against the real CUDA runtime
# (RATTN_CUDA_RUNTIME makes cuda/compat.h include <cuda_runtime.h> in g++-compiled host code).
$(BUILD)/gpu/tests/cuda/%.o: tests/cuda/%.cpp $(FLAGS_STAMP)
	@mkdir -p $(@D)
	$(say) CXX-GPU $<
	$(Q)$(CXX) $(CXXFLAGS) $(TEST_OPT) $(DEPFLAGS) -DRATTN_CUDA_RUNTIME -isystem $(CUDA_HOME)/include -c $< -o $@

$(BUILD)/gpu/tools/%.o: tools/%.cpp $(FLAGS_STAMP)
	@mkdir -p $(@D)
	$(say) CXX-GPU $<
	$(Q)$(CXX) $(CXXFLAGS) $(DEPFLAGS) -DRATTN_CUDA_RUNTIME -isystem $(CUDA_HOME)/include -c $< -o $@

# librattn.a before libcuda_gpu.a: a member of librattn.a pulled in for a common symbol (io/export.o holds
# the CudaOpsBackend) must find its cu:: kernels in an archive the linker has not passed yet.
CUDA_LIBS := -L$(CUDA_HOME)/lib64 -lcudart -lcublas -Wl,-rpath,$(CUDA_HOME)/lib64
$(GPU_TESTS): $(BIN)/tests/gpu/%: $(BUILD)/gpu/tests/cuda/%.o $(BUILD)/tests/doctest_main.o $(BUILD)/librattn.a $(BUILD)/libcuda_gpu.a
	@mkdir -p $(@D)
	$(say) LINK $@
	$(Q)$(CXX) $^ -o $@ $(LDFLAGS) $(CUDA_LIBS)

# GPU builds of the benchmark programs (tools/bench_*.cpp): bin/gpu/bench_X.
GPU_BENCH := $(patsubst tools/%.cpp,$(BIN)/gpu/%,$(wildcard tools/bench_*.cpp))
$(GPU_BENCH): $(BIN)/gpu/%: $(BUILD)/gpu/tools/%.o $(BUILD)/librattn.a $(BUILD)/libcuda_gpu.a
	@mkdir -p $(@D)
	$(say) LINK $@
	$(Q)$(CXX) $^ -o $@ $(LDFLAGS) $(CUDA_LIBS)

# bin/gpu/train_tiny: train_tiny on a real GPU (--device cuda runs the kernels of libcuda_gpu.a). The files
# that drive the device (the program, the trainer with model/device_trainer.h, the NCCL reducer) are
# compiled again against the CUDA runtime; given before librattn.a, they stand in for its CPU-layer copies.
GPU_TRAIN_OBJS := $(BUILD)/gpu/host/train_tiny.o $(BUILD)/gpu/host/model/trainer.o $(BUILD)/gpu/host/model/device_reduce.o
NCCL_STAMP := $(BUILD)/.nccl
$(NCCL_STAMP): FORCE
	@mkdir -p $(@D)
	@echo '$(NCCL_DEFS) | $(NCCL_LIBS)' | cmp -s - $@ || echo '$(NCCL_DEFS) | $(NCCL_LIBS)' > $@
$(BUILD)/gpu/host/%.o: %.cpp $(FLAGS_STAMP) $(NCCL_STAMP)
	@mkdir -p $(@D)
	$(say) CXX-GPU "$<$(if $(NCCL_FOUND), (with NCCL))"
	$(Q)$(CXX) $(CXXFLAGS) $(DEPFLAGS) -DRATTN_CUDA_RUNTIME -isystem $(CUDA_HOME)/include $(NCCL_DEFS) -c $< -o $@
$(BIN)/gpu/train_tiny: $(GPU_TRAIN_OBJS) $(BUILD)/librattn.a $(BUILD)/libcuda_gpu.a
	@mkdir -p $(@D)
	$(say) LINK $@
	$(Q)$(CXX) $^ -o $@ $(LDFLAGS) $(CUDA_LIBS) $(NCCL_LIBS) $(MPI_LIBS)

gpu-build: $(GPU_TESTS) $(GPU_BENCH) $(GPU_TRAIN)

# The Python package's suite is one more entry of the run (scripts/test_python.sh), counted in the closing line,
# when NumPy, pytest and pybind11 are here (scripts/deps_python.sh --check); never in the sanitizer builds
# (the extension is not built with them).
test: deps
	@py=$$([ -z "$(SANITIZE)$(TSAN)" ] && RATTN_PYTHON=$(PY_BASE) scripts/deps_python.sh --check && echo yes); \
	 [ -n "$$py" ] || [ -n "$(SANITIZE)$(TSAN)" ] || echo "make: NumPy, pytest or pybind11 for $(PY_BASE) missing: \
	skipping the Python package's tests (scripts/deps_python.sh installs them)"; \
	 $(MAKE) --no-print-directory status $(TESTS) $(EMU_TESTS) $(GPU_TESTS) $(GPU_TRAIN) $(PROGRAMS) $${py:+$(PY_STAMP)} && \
	 RATTN_BIN=$(CURDIR)/$(BIN) scripts/run_tests.sh $(TESTS) $(EMU_TESTS) $(GPU_TESTS) \
	   $${py:+scripts/test_python.sh}

# ---- the Python package (python/, docs/python.md) -------------------------------------------------------
# build/python/venv: a venv of Debian's python3 with its site packages (NumPy, pytest, pybind11 from
# scripts/deps_python.sh), into which pip installs python/ without build isolation and without an index:
# no download at all. The extension compiles ref/ (about 45 s); it is rebuilt when its sources change.
PY_BASE  ?= /usr/bin/python3
PY_VENV  := build/python/venv
PY_STAMP := build/python/.installed
# Rebuilt when anything it compiles changes: its own sources, ref/, and the model/ and io/ files setup.py lists
# (the checkpoint reader behind rattn.load and the flag table its config block is parsed with).
$(PY_STAMP): python/setup.py python/pyproject.toml $(wildcard python/src/*.cpp) $(wildcard python/rattn/*.py) \
    $(wildcard ref/*.h) model/checkpoint.cpp model/config.cpp model/cli.cpp io/files.cpp \
    $(wildcard model/*.h) $(wildcard io/*.h)
	@RATTN_PYTHON=$(PY_BASE) scripts/deps_python.sh
	@mkdir -p $(@D)
	$(say) PIP "python/ into $(PY_VENV)"
	$(Q)[ -x $(PY_VENV)/bin/python ] || $(PY_BASE) -m venv --system-site-packages $(PY_VENV)
	@rm -rf python/build  # setuptools' object files: it would reuse one whose ref/ headers changed
	$(Q)$(PY_VENV)/bin/pip install --no-build-isolation --no-deps --no-index ./python >$(@D)/pip.log 2>&1 \
	  || { cat $(@D)/pip.log; exit 1; }
	@touch $@

.PHONY: test-python
test-python: $(PY_STAMP) $(BIN)/rattn-op $(BIN)/train_tiny $(BIN)/infer
	@RATTN_BIN=$(CURDIR)/$(BIN) scripts/run_tests.sh scripts/test_python.sh


# ---- workshop exercises (exercises/, docs/workshop.md) ----------------------------------------------------
#   make exercise E=NAME     build exercises/NN_NAME.h in place of the project's function, run that function's
#                            checks and print a verdict (no GPU, no nvcc: kernels run on the CPU layer)
#   make exercise-solutions  for every exercise: the project's own body passes the checks, the stub fails them
# Each exercised function is wrapped in its file by `#ifndef RATTN_EXERCISE_<NAME>` ... `#else #include` the
# macro's value (one line of comment per hook). Only one object is rebuilt per exercise, in $(BUILD)/exercise/:
# a ref/ exercise recompiles its test file, a kernel exercise recompiles its .cu file and links it before the
# kernel library, next to the unchanged test object. The exercise binaries are not part of make test.
# EX_TEST.x: the test file with the checks; EX_CASES.x: their doctest filter (empty: every case);
# EX_CU.x: the kernel source that holds the hook (kernel exercises only).
EXERCISES := window_start swa_forward rla_recurrent rla_chunked rms_backward swa_kernel_v1 swa_kernel_v2 decode_step
EX_TEST.window_start   := tests/test_rope_swa.cpp
EX_CASES.window_start  := swa*
EX_TEST.swa_forward    := tests/test_rope_swa.cpp
EX_CASES.swa_forward   := swa*
EX_TEST.rla_recurrent  := tests/test_rla.cpp
EX_CASES.rla_recurrent := *recurrent and chunked forward agree*
EX_TEST.rla_chunked    := tests/test_rla.cpp
EX_CASES.rla_chunked   := *recurrent and chunked forward agree*,*split-and-resume*,*window partition*
EX_TEST.rms_backward   := tests/test_norm.cpp
EX_CASES.rms_backward  := *backward matches finite differences*
EX_TEST.swa_kernel_v1  := tests/cuda/test_swa.cpp
EX_CU.swa_kernel_v1    := cuda/swa.cu
EX_TEST.swa_kernel_v2  := tests/cuda/test_swa.cpp
EX_CU.swa_kernel_v2    := cuda/swa.cu
EX_TEST.decode_step    := tests/test_decode.cpp

ex_file  = exercises/$(notdir $(wildcard exercises/[0-9][0-9]_$(1).h))
ex_macro = RATTN_EXERCISE_$(shell echo $(1) | tr a-z A-Z)
ex_stem  = $(basename $(notdir $(EX_TEST.$(1))))
# The project's own test binary that runs the same checks on the project's body.
ex_ref_bin = $(if $(EX_CU.$(1)),$(BIN)/tests/emu/$(ex_stem),$(BIN)/tests/$(ex_stem))
EX_BINS := $(addprefix $(BIN)/exercise/,$(EXERCISES))

# EX_DEBUG=1: that one object built -O0 -g, for gdb (docs/workshop.md); the rest of the build is unchanged.
define EXERCISE_RULES
$(BUILD)/exercise/$(1)/.debug: FORCE
	@mkdir -p $$(@D)
	@echo '$(EX_DEBUG)' | cmp -s - $$@ || echo '$(EX_DEBUG)' > $$@
$(BUILD)/exercise/$(1)/hooked.o: $(or $(EX_CU.$(1)),$(EX_TEST.$(1))) $(call ex_file,$(1)) $(FLAGS_STAMP) \
    $(BUILD)/exercise/$(1)/.debug
	@mkdir -p $$(@D)
	$$(say) CXX-EX "$$< with $(call ex_file,$(1))$(if $(EX_DEBUG), (-O0 -g))"
	$$(Q)$$(CXX) $$(CXXFLAGS) $(if $(EX_CU.$(1)),,$$(TEST_OPT)) $(if $(EX_DEBUG),-O0 -g) $$(DEPFLAGS) -D$(call ex_macro,$(1))='"$(call ex_file,$(1))"' \
	  $(if $(EX_CU.$(1)),-x c++) -c $$< -o $$@
$(BIN)/exercise/$(1): $(BUILD)/exercise/$(1)/hooked.o $(if $(EX_CU.$(1)),$(BUILD)/tests/cuda/$(call ex_stem,$(1)).o) \
    $(BUILD)/tests/doctest_main.o $(if $(EX_CU.$(1)),$(BUILD)/libcuda_emu.a $(BUILD)/librattn.a,$(BUILD)/librattn.a \
    $(BUILD)/libcuda_emu.a)
	@mkdir -p $$(@D)
	$$(say) LINK $$@
	$$(Q)$$(CXX) $$^ -o $$@ $$(LDFLAGS)
endef
$(foreach e,$(EXERCISES),$(eval $(call EXERCISE_RULES,$(e))))

.PHONY: exercise exercise-solutions
exercise: deps
	@if [ -z "$(filter $(E),$(EXERCISES))" ] || [ -z "$(E)" ]; then \
	  echo "make exercise E=NAME, NAME one of (in order; docs/workshop.md):"; \
	  for e in $(EXERCISES); do echo "  $$e"; done; exit 2; fi
	@$(MAKE) --no-print-directory $(BIN)/exercise/$(E)
	@scripts/exercise.sh $(E) $(BIN)/exercise/$(E) '$(EX_CASES.$(E))'

# CI: for every exercise, (a) the project's body passes the exercise's checks (the project's own test binary,
# same filter) and (b) the stub as committed compiles and fails them, with a first failed check to show.
exercise-solutions: deps
	@$(MAKE) --no-print-directory $(sort $(foreach e,$(EXERCISES),$(call ex_ref_bin,$(e)))) $(EX_BINS)
	@scripts/exercise_solutions.sh \
	  $(foreach e,$(EXERCISES),"$(e)|$(call ex_ref_bin,$(e))|$(BIN)/exercise/$(e)|$(EX_CASES.$(e))")

# The CPU-layer kernel tests under ThreadSanitizer, blocks on 2 host threads (races between blocks
# show too); tests/cuda/tsan.supp lists the races tests/cuda/test_emu.cpp commits on purpose.
tsan-test: deps
	@$(MAKE) --no-print-directory TSAN=1 tsan-run
# One fiber order (RATTN_EMU_ONE_ORDER): TSan reports a race whatever order hides it.
tsan-run: $(EMU_TESTS)
	@OMP_NUM_THREADS=1 EMU_HOST_THREADS=2 RATTN_EMU_ONE_ORDER=1 \
	  TSAN_OPTIONS="suppressions=$(CURDIR)/tests/cuda/tsan.supp" scripts/run_tests.sh $(EMU_TESTS)

# The whole suite (programs included: tests/test_cli.cpp runs bin/asan/*) under ASan + UBSan;
# any sanitizer report fails the test binary. Fibers of the CPU layer: see cuda/emu/fiber.h. The
# CPU-layer kernel tests run in one fiber order (RATTN_EMU_ONE_ORDER; `make test` runs both).
test-sanitize:
	@ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:detect_stack_use_after_return=0 RATTN_EMU_ONE_ORDER=1 \
	 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 $(MAKE) --no-print-directory SANITIZE=1 test

# libFuzzer targets in fuzz/ (clang), FUZZ_SECONDS each (default 60); see scripts/fuzz.sh.
fuzz:
	@scripts/fuzz.sh

# Compile every .cu with nvcc for the target GPU (warnings are errors); CI has no GPU to run them.
cuda-compile: $(GPU_OBJS) $(GPU_TRAIN)
	@if [ -z "$(NVCC)" ]; then echo "cuda-compile: nvcc not found; nothing compiled"; fi

train: deps
	@$(MAKE) --no-print-directory $(BIN)/train_tiny
	$(BIN)/train_tiny

# The CPU-layer kernel tests built for the portable x86-64 baseline (no -march: SSE2, no FMA) in their
# own folders, so that a tolerance that holds only for one vector width or FMA contraction shows here.
test-portable: deps
	@$(MAKE) --no-print-directory ARCH= BUILD=build/portable BIN=bin/portable portable-run
portable-run: $(EMU_TESTS)
	@scripts/run_tests.sh $(EMU_TESTS)

bench: deps all
	@scripts/bench.sh

# The paper's quality-vs-window sweep at tiny scale (scripts/pareto.py, results/pareto/, docs/experiments.md).
# pareto-quick: local-only diagnostic at w = 16 (full / swa / rattn; easy data, minutes).
# pareto: the harder recall regime (random filler, distractor keys, pairs anywhere; 3 seeds, decode to 16x;
# hours), in both stacks: local-only with 8 pairs (grid hard), local-global with 16 pairs (grid lg-hard).
# The window ladder on the easy data: scripts/pareto.py --grid full. PARETO_ARGS goes to every grid.
pareto-quick: deps $(BIN)/train_tiny $(BIN)/pareto_eval
	scripts/pareto.py --grid quick --bin $(BIN) $(PARETO_ARGS)
pareto: deps $(BIN)/train_tiny $(BIN)/pareto_eval
	scripts/pareto.py --grid hard --bin $(BIN) $(PARETO_ARGS)
	scripts/pareto.py --grid lg-hard --bin $(BIN) $(PARETO_ARGS)

gpu-check:
	@scripts/gpu_check.sh

clean:
	rm -rf build bin

.SECONDARY:
-include $(shell find build -name '*.d' 2>/dev/null)
