/* SPDX-License-Identifier: MIT */
/* strop example — the smallest tour of the API: make a tensor, fill it, view it with another
 * shape, read it back, and see what a failing call reports. Build: see examples/CMakeLists.txt. */
#include <stdio.h>

#include <strop/strop.h>

static void print_shape(const char *name, const strop_tensor *t) {
  int64_t dims[STROP_MAX_RANK];
  int rank = strop_tensor_shape(t, dims, STROP_MAX_RANK);
  printf("%s: shape [", name);
  for (int i = 0; i < rank; i++) printf("%s%lld", i ? ", " : "", (long long)dims[i]);
  printf("], %lld elements\n", (long long)strop_tensor_numel(t));
}

int main(void) {
  printf("strop %s\n", strop_version());

  /* A 2 x 6 tensor, owned by us until strop_tensor_free. */
  int64_t dims[2] = {2, 6};
  strop_tensor *t = NULL;
  strop_status st = strop_tensor_create(2, dims, &t);
  if (st != STROP_OK) {
    fprintf(stderr, "create: %s: %s\n", strop_status_str(st), strop_last_error());
    return 1;
  }
  st = strop_tensor_fill(t, 0.5f);
  if (st == STROP_OK) {
    float *x = strop_tensor_data(t); /* borrowed from t */
    for (int64_t i = 0; i < strop_tensor_numel(t); i++) x[i] += (float)i;
  }
  print_shape("t", t);

  /* A view with another shape: shares t's storage; -1 is inferred (12 / 4 = 3). */
  int64_t view_dims[2] = {-1, 4};
  strop_tensor *v = NULL;
  if (st == STROP_OK) st = strop_tensor_reshape(t, 2, view_dims, &v);
  if (st != STROP_OK) {
    fprintf(stderr, "%s: %s\n", strop_status_str(st), strop_last_error());
    strop_tensor_free(t);
    return 1;
  }
  print_shape("v", v);
  printf("v[2][1] = %g\n", (double)strop_tensor_data(v)[2 * 4 + 1]);

  /* A mistake: 12 elements cannot be viewed as 5 x 3. The call fails cleanly and says why. */
  int64_t bad[2] = {5, 3};
  strop_tensor *w = NULL;
  st = strop_tensor_reshape(t, 2, bad, &w);
  printf("reshape to [5, 3] -> %s\n  strop_last_error(): %s\n", strop_status_str(st),
         strop_last_error());

  strop_tensor_free(v);
  strop_tensor_free(t);
  strop_tensor_free(w); /* NULL after the failure; freeing NULL is fine */
  return st == STROP_E_SHAPE ? 0 : 1;
}
