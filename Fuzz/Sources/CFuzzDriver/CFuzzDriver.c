// Only the header matters: it declares libFuzzer's LLVMFuzzerRunDriver for Swift (FuzzSupport).
#include "CFuzzDriver.h"
