/* strop — umbrella header: include this one. */
#ifndef STROP_H
#define STROP_H

/** @file strop.h @brief Includes every public strop header. @since 0.1 */

#include "common.h"
#include "version.h"
#include "error.h"
#include "tensor.h"
#include "runtime.h"
#include "model.h"
#include "io.h"
#include "surgery.h"
#include "data.h"
#include "optim.h"
#include "dist.h"
#include "train.h"
#include "recipe.h"
#include "tune.h"
#include "pretrained.h"
#include "text.h"

#endif
