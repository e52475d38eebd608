// The C interface's types and prototypes live in include/expert_archive.h, implemented in Swift
// (ExpertArchiveC); SwiftPM needs one source file in a C target.
#include "expert_archive.h"
