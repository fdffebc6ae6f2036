// Umbrella header.
#pragma once

#include "usp/agree.hpp"
#include "usp/attention.hpp"
#include "usp/comm.hpp"
#include "usp/dtype.hpp"
#include "usp/error.hpp"
#include "usp/kernel.hpp"
#include "usp/layout.hpp"
#include "usp/memory.hpp"
#include "usp/mesh.hpp"
#include "usp/tensor.hpp"
#include "usp/timings.hpp"

namespace usp {
const char* version();
}
