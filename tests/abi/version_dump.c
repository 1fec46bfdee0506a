/* SPDX-License-Identifier: MIT */
/* strop tests — prints the version of the libstrop it runs against (strop_version()), for
 * tests/abi/check_version.sh to compare with every other place the version is written. */
#include <stdio.h>

#include "strop/strop.h"

int main(void) {
  printf("%s\n", strop_version());
  return 0;
}
