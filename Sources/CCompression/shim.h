#include <zlib.h>
#include <snappy-c.h>
