# eopt: `make` (CPU), `make CUDA=1` (adds the CUDA backend), `make test`, `make test-asan`,
# `make deps` (Debian packages and data the build, tests and default run need).
CC       ?= cc
NVCC     ?= /usr/local/cuda/bin/nvcc
BUILD    ?= build
FIXTURES ?= $(abspath ../shared/fixtures)
HDF5_CFLAGS := $(shell pkg-config --cflags hdf5 2>/dev/null)
HDF5_LIBS   := $(shell pkg-config --libs hdf5 2>/dev/null)
# OpenBLAS's OpenMP build: BLAS and eopt's own loops share one OpenMP thread pool. With the
# pthread build the two pools spin against each other and 2 threads run slower than 1.
# DT_RPATH (not RUNPATH) so that liblapacke's own liblapack/libblas come from it too.
OPENBLAS_DIR := /usr/lib/x86_64-linux-gnu/openblas-openmp
OPENBLAS_INC := /usr/include/x86_64-linux-gnu/openblas-openmp
OPT      ?= -O2 -g
CFLAGS   := $(OPT) -std=c11 -D_GNU_SOURCE -Wall -Wextra -fPIC -fopenmp -I. -I$(OPENBLAS_INC) $(HDF5_CFLAGS)
LDLIBS   := $(HDF5_LIBS) -lconfig -llapacke -L$(OPENBLAS_DIR) -Wl,--disable-new-dtags,-rpath,$(OPENBLAS_DIR) -lopenblas -lz -lm -fopenmp

LIB_SRC := $(wildcard framework/*.c optimizers/*.c checkpoint/*.c models/*.c train/*.c cmd/*.c)
LIB_SRC := $(filter-out cmd/main.c,$(LIB_SRC))
ifeq ($(CUDA),1)
  CUDA_HOME ?= /usr/local/cuda
  LIB_SRC := $(filter-out framework/backend_nocuda.c,$(LIB_SRC))
  CU_SRC  := $(wildcard framework/*.cu)
  # --fmad=false: no contraction of a*b+c into FMA, so the shared element-wise math rounds as
  # on the CPU (C11 mode contracts nothing) and the backends agree bit for bit.
  NVFLAGS := -O2 -std=c++17 -Xcompiler -fPIC,-Wall,-Wextra -I. -arch=sm_90 --fmad=false -Werror all-warnings
  # No cuRAND: random numbers come from the counter-based Philox shared with the CPU
  # (framework/rng.h), so both backends draw identical numbers from the same seed.
  LDLIBS  += -L$(CUDA_HOME)/lib64 -lcublas -lcusolver -lcudart -lstdc++
  CFLAGS  += -DEOPT_CUDA=1
endif
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o) $(CU_SRC:%.cu=$(BUILD)/%.cu.o)
TEST_SRC := $(wildcard tests/*.c)
TEST_OBJ := $(TEST_SRC:%.c=$(BUILD)/%.o)
BENCH_SRC := $(wildcard bench/*.c)

.PHONY: all test test-asan deps clean bench
all: $(BUILD)/eopt $(BUILD)/libeopt.a $(BUILD)/libeopt.so

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/%.cu.o: %.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(NVFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/libeopt.a: $(LIB_OBJ)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/libeopt.so: $(LIB_OBJ)
	$(CC) -shared -o $@ $^ $(LDLIBS)

$(BUILD)/eopt: $(BUILD)/cmd/main.o $(BUILD)/libeopt.a
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/eopt-tests: $(TEST_OBJ) $(BUILD)/libeopt.a
	$(CC) $(CFLAGS) -o $@ $^ -lcriterion $(LDLIBS)

$(BUILD)/bench/%: bench/%.c $(BUILD)/libeopt.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

bench: $(BENCH_SRC:%.c=$(BUILD)/%)

# Tests read the fixtures in place; the eopt binary is used by the command-line tests.
test: $(BUILD)/eopt-tests $(BUILD)/eopt
	EOPT_FIXTURES=$(FIXTURES) EOPT_BIN=$(abspath $(BUILD)/eopt) OMP_NUM_THREADS=2 $(BUILD)/eopt-tests $(TEST_ARGS)

test-asan:
	$(MAKE) BUILD=$(BUILD)-asan OPT="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" test

deps:
	@sh .ci/deps.sh

clean:
	rm -rf build build-asan

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
