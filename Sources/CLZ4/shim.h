// Debian's liblz4-dev: the frame API (LZ4F_*) and the block API it is built on.
#include <lz4.h>
#include <lz4frame.h>
