/* SPDX-License-Identifier: MIT */
/* strop — per-thread error sentences, status names and the host's log handler. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "core.h"

#define ERR_CAP 1024
static _Thread_local char t_err[ERR_CAP];

const char *strop_status_str(int status) {
  switch (status) {
    case STROP_OK: return "ok";
    case STROP_E_INVALID_ARG: return "invalid argument";
    case STROP_E_NOMEM: return "out of memory";
    case STROP_E_IO: return "input/output error";
    case STROP_E_FORMAT: return "bad format";
    case STROP_E_SHAPE: return "shape mismatch";
    case STROP_E_NOT_FOUND: return "not found";
    case STROP_E_STATE: return "bad state";
    case STROP_E_NUMERIC: return "numeric error";
    case STROP_E_UNSUPPORTED: return "unsupported";
    case STROP_E_INTERNAL: return "internal error";
    case STROP_E_CALLBACK: return "callback failed";
    case STROP_E_CANCELLED: return "cancelled";
    default: return "unknown status";
  }
}

const char *strop_last_error(void) { return t_err; }
void strop_clear_error(void) { t_err[0] = '\0'; }

strop_status strop__verr(strop_status status, const char *fmt, va_list ap) {
  vsnprintf(t_err, ERR_CAP, fmt, ap);
  return status;
}

strop_status strop__err(strop_status status, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  strop__verr(status, fmt, ap);
  va_end(ap);
  return status;
}

/* Length of the function name that starts s and is followed by ": " ("strop_x: ..."), or 0. */
static size_t leading_name(const char *s) {
  if (strncmp(s, "strop_", 6) != 0) return 0;
  size_t n = 6;
  while ((s[n] >= 'a' && s[n] <= 'z') || (s[n] >= '0' && s[n] <= '9') || s[n] == '_') n++;
  return s[n] == ':' && s[n + 1] == ' ' ? n : 0;
}

void strop__err_prefix(const char *fmt, ...) {
  char pre[256], old[ERR_CAP];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(pre, sizeof pre, fmt, ap);
  va_end(ap);
  memcpy(old, t_err, ERR_CAP);
  /* The prefix names the function the caller called; the sentence below it must not name it
   * again ("strop_recipe_set: ...: strop_recipe_set: ..."), nor an internal helper
   * (strop__...) the caller never heard of. Another public function's name stays: it tells
   * where the failure came from. */
  const char *rest_of_old = old;
  size_t pn = strlen(pre), on = leading_name(old);
  size_t pname = 0;
  while (pname < pn && pre[pname] != ':') pname++;
  if (on && ((on == pname && !strncmp(old, pre, on)) || !strncmp(old, "strop__", 7)))
    rest_of_old = old + on + 2;
  size_t n = pn;
  if (n > ERR_CAP - 3) n = ERR_CAP - 3;
  memcpy(t_err, pre, n);
  t_err[n] = ':';
  t_err[n + 1] = ' ';
  size_t rest = ERR_CAP - n - 3;
  size_t m = strlen(rest_of_old);
  if (m > rest) m = rest;
  memcpy(t_err + n + 2, rest_of_old, m);
  t_err[n + 2 + m] = '\0';
}

/* ---- logging ---- */
static pthread_mutex_t g_log_mu = PTHREAD_MUTEX_INITIALIZER;
static strop_log_fn g_log_fn;
static int g_log_max;
static void *g_log_user;

void strop_set_log_handler(strop_log_fn fn, int max_level, void *user_data) {
  pthread_mutex_lock(&g_log_mu);
  g_log_fn = fn;
  g_log_max = max_level;
  g_log_user = user_data;
  pthread_mutex_unlock(&g_log_mu);
}

void strop__log(int level, const char *fmt, ...) {
  pthread_mutex_lock(&g_log_mu);
  strop_log_fn fn = g_log_fn;
  int max = g_log_max;
  void *user = g_log_user;
  pthread_mutex_unlock(&g_log_mu);
  if (!fn || level > max) return;
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  fn(level, msg, user);
}

int64_t strop__copy_out(const char *fn, const char *s, char *buf, size_t cap) {
  if (!buf && cap) {
    strop__err(STROP_E_INVALID_ARG, "%s: buf is NULL but cap is %zu", fn, cap);
    return -1;
  }
  size_t n = strlen(s);
  if (cap) {
    size_t k = n < cap ? n : cap - 1;
    memcpy(buf, s, k);
    buf[k] = '\0';
  }
  return (int64_t)n;
}

strop_status strop__options_in(const char *fn, const char *init_fn, void *dst, size_t dst_size,
                               const void *src) {
  if (!src) return STROP_OK;
  size_t given;
  memcpy(&given, src, sizeof given);
  if (given < sizeof(size_t))
    return strop__err(STROP_E_INVALID_ARG, "%s: options.size is %zu; call %s first", fn, given,
                      init_fn);
  const size_t n = given < dst_size ? given : dst_size;
  memcpy((char *)dst + sizeof(size_t), (const char *)src + sizeof(size_t), n - sizeof(size_t));
  memcpy(dst, &dst_size, sizeof dst_size);
  return STROP_OK;
}
