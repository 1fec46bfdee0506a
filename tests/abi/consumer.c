/* SPDX-License-Identifier: MIT */
/* strop ABI test — a program outside the project, built against an installed strop (through
 * pkg-config and through find_package), that uses the public API only. Exit 0 when all holds. */
#include <stdio.h>
#include <string.h>

#include <strop/strop.h>

#define STR2(x) #x
#define STR(x) STR2(x)

static int failures;
#define EXPECT(cond)                                                       \
  do {                                                                     \
    if (!(cond)) {                                                         \
      fprintf(stderr, "consumer: %s:%d: %s\n", __FILE__, __LINE__, #cond); \
      failures++;                                                          \
    }                                                                      \
  } while (0)

int main(void) {
  const char *want = STR(STROP_VERSION_MAJOR) "." STR(STROP_VERSION_MINOR) "." STR(
      STROP_VERSION_PATCH);
  EXPECT(strcmp(strop_version(), want) == 0);
  EXPECT(strop_version_number() == STROP_VERSION_NUMBER);

  int64_t dims[2] = {2, 3};
  strop_tensor *t = NULL, *v = NULL;
  EXPECT(strop_tensor_create(2, dims, &t) == STROP_OK);
  EXPECT(strop_tensor_fill(t, 1.5f) == STROP_OK);
  int64_t flat[1] = {-1};
  EXPECT(strop_tensor_reshape(t, 1, flat, &v) == STROP_OK);
  EXPECT(strop_tensor_numel(v) == 6);
  EXPECT(strop_tensor_dim(v, 0) == 6);
  EXPECT(strop_tensor_data(v) != NULL && strop_tensor_data(v)[5] == 1.5f);
  strop_tensor_free(t);
  strop_tensor_free(v);

  strop_clear_error();
  EXPECT(strop_last_error() != NULL && strop_last_error()[0] == '\0');
  int64_t bad[1] = {0};
  strop_tensor *u = NULL;
  EXPECT(strop_tensor_create(1, bad, &u) == STROP_E_INVALID_ARG);
  EXPECT(u == NULL);
  EXPECT(strstr(strop_last_error(), "strop_tensor_create") != NULL);
  EXPECT(strcmp(strop_status_str(STROP_E_INVALID_ARG), "invalid argument") == 0);

  if (failures) return 1;
  printf("consumer: strop %s ok (error path said: %s)\n", strop_version(), strop_last_error());
  return 0;
}
