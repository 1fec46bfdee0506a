/* SPDX-License-Identifier: MIT */
/* strop fuzz target — the CSV parser (strop__csv_parse). The first byte picks the options
 * (delimiter, header, sklearn header, label column and mode); the rest is the file. */
#include <stddef.h>
#include <stdint.h>

#include "data/data_impl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  uint8_t o = data[0];
  static const int delims[4] = {',', ';', ' ', '\t'};
  strop_csv_options opt;
  strop_csv_options_init(&opt);
  opt.delimiter = delims[o & 3];
  opt.header = (o >> 2) & 1;
  opt.sklearn_header = (o >> 3) & 1;
  opt.label_mode = (o >> 4) & 3;
  opt.label_column = (o >> 6) == 0 ? -1 : (int64_t)(o >> 6) - 2;
  if (opt.header && (o & 0x80)) opt.label_name = "label";
  strop__csv_table t;
  if (strop__csv_parse((const char *)data + 1, size - 1, "fuzz.csv", &opt, &t) != STROP_OK)
    return 0;
  volatile float acc = 0;
  for (int64_t i = 0; i < t.rows * t.features; i++) acc += t.x[i];
  for (int64_t i = 0; i < t.rows; i++) acc += t.y[i];
  strop__csv_table_free(&t);
  return 0;
}
