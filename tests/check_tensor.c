/* SPDX-License-Identifier: MIT */
/* strop tests — tensor suite: create, wrap, views, accessors, errors, allocation failures. */
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "strop/strop.h"
#include "testutil.h"

START_TEST(create_zeroed) {
  int64_t dims[3] = {2, 3, 4};
  strop_tensor *t = NULL;
  ck_assert_int_eq(strop_tensor_create(3, dims, &t), STROP_OK);
  ck_assert_int_eq(strop_tensor_rank(t), 3);
  ck_assert_int_eq(strop_tensor_numel(t), 24);
  ck_assert_int_eq(strop_tensor_dim(t, -1), 4);
  for (int i = 0; i < 24; i++) ck_assert_float_eq(strop_tensor_data(t)[i], 0.0f);
  strop_tensor_free(t);
}
END_TEST

START_TEST(create_errors) {
  strop_tensor *t = (strop_tensor *)1;
  int64_t bad[2] = {2, -3};
  ck_assert_int_eq(strop_tensor_create(2, bad, &t), STROP_E_INVALID_ARG);
  ck_assert_ptr_null(t);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "dims[1] must be > 0, got -3"));
  ck_assert_int_eq(strop_tensor_create(0, bad, &t), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_tensor_create(9, bad, &t), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_tensor_create(1, NULL, &t), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_tensor_create(1, bad, NULL), STROP_E_INVALID_ARG);
  int64_t huge[3] = {INT64_C(1) << 40, INT64_C(1) << 40, 4};
  ck_assert_int_eq(strop_tensor_create(3, huge, &t), STROP_E_SHAPE);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "overflow"));
  ck_assert_int_eq(strop_tensor_numel(NULL), -1);
  ck_assert_int_eq(strop_tensor_dim(NULL, 0), -1);
  ck_assert_int_eq(strop_tensor_rank(NULL), 0);
  ck_assert_ptr_null(strop_tensor_data(NULL));
  ck_assert_int_eq(strop_tensor_fill(NULL, 1.0f), STROP_E_INVALID_ARG);
  strop_tensor_free(NULL);
}
END_TEST

START_TEST(wrap_no_copy) {
  float buf[6] = {1, 2, 3, 4, 5, 6};
  int64_t dims[2] = {2, 3};
  strop_tensor *t = NULL;
  ck_assert_int_eq(strop_tensor_wrap(buf, 6, 2, dims, &t), STROP_OK);
  ck_assert_ptr_eq(strop_tensor_data(t), buf);
  ck_assert_int_eq(strop_tensor_fill(t, 7.0f), STROP_OK);
  ck_assert_float_eq(buf[5], 7.0f);
  strop_tensor_free(t);
  ck_assert_float_eq(buf[0], 7.0f); /* the caller's buffer survives */
  ck_assert_int_eq(strop_tensor_wrap(buf, 5, 2, dims, &t), STROP_E_SHAPE);
  ck_assert_int_eq(strop_tensor_wrap(NULL, 6, 2, dims, &t), STROP_E_INVALID_ARG);
}
END_TEST

START_TEST(copy_and_reshape) {
  float v[6] = {1, 2, 3, 4, 5, 6};
  int64_t dims[2] = {2, 3};
  strop_tensor *a = NULL, *b = NULL, *c = NULL;
  ck_assert_int_eq(strop_tensor_from_data(v, 6, 2, dims, &a), STROP_OK);
  ck_assert_int_eq(strop_tensor_copy(a, &b), STROP_OK);
  ck_assert_ptr_ne(strop_tensor_data(a), strop_tensor_data(b));
  int64_t nd[2] = {-1, 2};
  ck_assert_int_eq(strop_tensor_reshape(a, 2, nd, &c), STROP_OK);
  ck_assert_int_eq(strop_tensor_dim(c, 0), 3);
  ck_assert_ptr_eq(strop_tensor_data(c), strop_tensor_data(a));
  strop_tensor_free(a); /* the view keeps the storage */
  ck_assert_float_eq(strop_tensor_data(c)[5], 6.0f);
  float out[6];
  ck_assert_int_eq(strop_tensor_copy_to(b, out, 6), STROP_OK);
  ck_assert_float_eq(out[3], 4.0f);
  ck_assert_int_eq(strop_tensor_copy_to(b, out, 5), STROP_E_SHAPE);
  int64_t bad[2] = {4, 2};
  strop_tensor *d = NULL;
  ck_assert_int_eq(strop_tensor_reshape(b, 2, bad, &d), STROP_E_SHAPE);
  int64_t two[2] = {-1, -1};
  ck_assert_int_eq(strop_tensor_reshape(b, 2, two, &d), STROP_E_SHAPE);
  ck_assert_ptr_null(d);
  strop_tensor_free(b);
  strop_tensor_free(c);
}
END_TEST

static strop_tensor *g_t;
static int op_create(void *ctx) {
  (void)ctx;
  int64_t dims[2] = {4, 5};
  return strop_tensor_create(2, dims, &g_t);
}
static int op_view(void *ctx) {
  int64_t dims[1] = {20};
  return strop_tensor_reshape((strop_tensor *)ctx, 1, dims, &g_t);
}
static int op_wrap(void *ctx) {
  int64_t dims[1] = {20};
  return strop_tensor_wrap((float *)ctx, 20, 1, dims, &g_t);
}
static void free_t(void *ctx) {
  (void)ctx;
  strop_tensor_free(g_t);
  g_t = NULL;
}

START_TEST(alloc_failures) {
  ck_assert_int_ge(strop_test_alloc_sweep(op_create, free_t, NULL), 1);
  strop_tensor *src = NULL;
  int64_t dims[2] = {4, 5};
  ck_assert_int_eq(strop_tensor_create(2, dims, &src), STROP_OK);
  ck_assert_int_ge(strop_test_alloc_sweep(op_view, free_t, src), 1);
  strop_tensor_free(src);
  float buf[20];
  ck_assert_int_ge(strop_test_alloc_sweep(op_wrap, free_t, buf), 1);
}
END_TEST

int main(void) {
  Suite *s = suite_create("tensor");
  TCase *tc = tcase_create("create");
  tcase_add_test(tc, create_zeroed);
  tcase_add_test(tc, wrap_no_copy);
  tcase_add_test(tc, copy_and_reshape);
  suite_add_tcase(s, tc);
  tc = tcase_create("errors");
  tcase_add_test(tc, create_errors);
  tcase_add_test(tc, alloc_failures);
  suite_add_tcase(s, tc);
  return strop_test_run(s);
}
