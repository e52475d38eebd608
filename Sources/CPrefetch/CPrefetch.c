// CPrefetch is a header-only helper (include/CPrefetch.h); SwiftPM needs one source file.
#include "CPrefetch.h"
