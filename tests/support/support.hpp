// The test support library, namespace usp::test: random inputs, shared cases, error
// expectations, scoped environment, relative tolerances and kernel-case helpers.
#pragma once

#include "support/cases.hpp"
#include "support/env.hpp"
#include "support/errors.hpp"
#include "support/kernel.hpp"
#include "support/random.hpp"
#include "support/tolerance.hpp"
