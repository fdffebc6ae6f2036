# usp developer entry points.
SHELL := /bin/bash

BUILD_DIR ?= build
BENCH_ARGS ?=
FORMAT_DIRS := $(wildcard include src tools tests python)
FORMAT_FILES = $(shell find $(FORMAT_DIRS) -type f \( -name '*.hpp' -o -name '*.cpp' \
                 -o -name '*.cu' -o -name '*.cuh' \) 2>/dev/null | sort)

.PHONY: all deps build test bench format format-check clean

all: build

deps:
	scripts/install-deps

build: deps
	scripts/build $(BUILD_DIR) -DCMAKE_BUILD_TYPE=Release

test:
	scripts/test

bench: build
	$(BUILD_DIR)/bin/usp-bench $(BENCH_ARGS)

format:
	@files="$(FORMAT_FILES)"; [[ -z "$$files" ]] || clang-format -i $$files

format-check:
	@files="$(FORMAT_FILES)"; [[ -z "$$files" ]] || clang-format --dry-run --Werror $$files

clean:
	rm -rf build build-asan build-tsan
