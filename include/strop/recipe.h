/* SPDX-License-Identifier: MIT */
/* strop — recipes: a whole fine-tuning job in one YAML file (base model, surgery, data, loss,
 * optimizer, schedule, stages, outputs), loaded, edited by key path, and run. */
#ifndef STROP_RECIPE_H
#define STROP_RECIPE_H

#include "common.h"
#include "dist.h"
#include "error.h"
#include "model.h"
#include "train.h"

/**
 * @file recipe.h
 * @brief YAML recipes: a whole fine-tuning job in one file, loaded, edited by key path, run
 *        and tuned.
 * @since 0.1
 */

STROP_BEGIN_DECLS

/**
 * @brief A parsed and validated recipe (docs/recipes.md). One handle from one thread at a
 *        time; functions that only read it (get, to_string, save, run, evaluate, tune) may
 *        run concurrently on a recipe no one modifies.
 * @since 0.1
 */
typedef struct strop_recipe strop_recipe;

/**
 * @brief Loads and validates a recipe file. Relative paths in it are relative to its folder.
 * @param[in]  path The recipe file.
 * @param[out] out  The recipe, owned by the caller (strop_recipe_free()); NULL on error.
 * @return STROP_OK; STROP_E_IO (cannot read the file); STROP_E_FORMAT (YAML error, file too
 *         large, unknown key, wrong type: the sentence names file:line:col and the keys
 *         expected there); STROP_E_INVALID_ARG (NULL); STROP_E_NOMEM. Thread-safe.
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_recipe_load(const char *path, strop_recipe **out);

/**
 * @brief Parses a recipe from a string; relative paths resolve against @p base_dir.
 * @param[in]  yaml     The recipe text; only read during the call. Errors name "<string>"
 *                      as the file.
 * @param[in]  base_dir Folder for relative paths (copied), or NULL for the working directory.
 * @param[out] out      The recipe, owned by the caller (strop_recipe_free()); NULL on error.
 * @return STROP_OK; STROP_E_FORMAT (as strop_recipe_load()); STROP_E_INVALID_ARG (NULL);
 *         STROP_E_NOMEM. Thread-safe.
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_recipe_load_string(const char *yaml,
                                                                const char *base_dir,
                                                                strop_recipe **out);

/**
 * @brief Deep copy.
 * @param[in]  r   The recipe; only read.
 * @param[out] out The copy, owned by the caller (strop_recipe_free()); NULL on error.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL); STROP_E_NOMEM.
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_recipe_clone(const strop_recipe *r,
                                                          strop_recipe **out);

/**
 * @brief Frees the recipe.
 * @param[in] r The recipe, or NULL (a no-op).
 * @since 0.1
 */
STROP_API void strop_recipe_free(strop_recipe *r);

/**
 * @brief Sets the value at a key path, creating missing mappings: "optimizer.lr",
 *        "data.batch_size", "stages[1].epochs", "surgery[0].lora.rank". The recipe is
 *        validated again; on error it is unchanged.
 * @param[in,out] r        The recipe.
 * @param[in]     key_path The key path (at most 16 parts).
 * @param[in]     value    YAML text ("3e-4", "[5, 6]", "{kind: adam}"); copied.
 * @return STROP_OK; STROP_E_NOT_FOUND (a list index out of range); STROP_E_FORMAT (the value
 *         or the result does not validate: the sentence says why); STROP_E_INVALID_ARG (NULL,
 *         bad path); STROP_E_NOMEM.
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_recipe_set(strop_recipe *r, const char *key_path,
                                                        const char *value);

/**
 * @brief The scalar at a key path as text, snprintf-style into @p buf.
 * @param[in]  r        The recipe.
 * @param[in]  key_path The key path, as for strop_recipe_set().
 * @param[out] buf      Receives the text; may be NULL when @p cap is 0.
 * @param[in]  cap      Bytes available at @p buf.
 * @return The full length, or -1 when absent, null or not a scalar, or for bad arguments (no
 *         error sentence).
 * @since 0.1
 */
STROP_API int64_t strop_recipe_get(const strop_recipe *r, const char *key_path, char *buf,
                                   size_t cap);

/**
 * @brief The recipe as YAML text, snprintf-style.
 * @param[in]  r   The recipe.
 * @param[out] buf Receives the text; may be NULL when @p cap is 0.
 * @param[in]  cap Bytes available at @p buf.
 * @return The full length, or -1 (NULL recipe, NULL @p buf with @p cap > 0, out of memory).
 * @since 0.1
 */
STROP_API int64_t strop_recipe_to_string(const strop_recipe *r, char *buf, size_t cap);

/**
 * @brief Writes the recipe as YAML, atomically (temporary file, fsync, rename).
 * @param[in] r    The recipe; only read.
 * @param[in] path The file to write.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL); STROP_E_IO (naming the path); STROP_E_NOMEM.
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_recipe_save(const strop_recipe *r, const char *path);

/* ---- running ---- */

/**
 * @brief The result of running a recipe: the trained model, metrics, history. Its getters
 *        only read it.
 * @since 0.1
 */
typedef struct strop_run strop_run;

/** @brief What a run does with the model section. @since 0.1 */
typedef enum strop_run_mode {
  STROP_RUN_FINETUNE = 0, /**< Load spec + pre-trained weights (model.weights required). */
  STROP_RUN_TRAIN = 1     /**< Build the spec with fresh weights (pre-training, scratch). */
} strop_run_mode;

/** @brief Events reported while a recipe runs. @since 0.1 */
typedef enum strop_run_event_kind {
  STROP_EVENT_STAGE_START = 0, /**< A stage (or baseline) begins: stage, name, sizes. */
  STROP_EVENT_PROGRESS = 1,    /**< A batch or epoch report of the fit loop: progress. */
  STROP_EVENT_STAGE_END = 2    /**< A stage ended: test metrics after it (NaN without test). */
} strop_run_event_kind;

/**
 * @brief An event of strop_recipe_run(); fields only appended, read those within @c size.
 * @since 0.1
 */
typedef struct strop_run_event {
  size_t size;                    /**< sizeof(strop_run_event). */
  int kind;                       /**< strop_run_event_kind. */
  int64_t stage;                  /**< Stage index; baselines come after the stages. */
  int64_t stages;                 /**< Stages plus baselines. */
  const char *name;               /**< Stage name ("head", "all", "scratch"). */
  const strop_progress *progress; /**< For STROP_EVENT_PROGRESS, else NULL. */
  double test_loss;               /**< For STROP_EVENT_STAGE_END: the test loss after the
                                        stage (NaN without test data). */
  double test_accuracy;           /**< For STROP_EVENT_STAGE_END: the test accuracy. */
  int64_t trainable;              /**< Trainable parameters at stage start. */
  int64_t total;                  /**< Parameters at stage start. */
} strop_run_event;

/**
 * @brief Receives run events, on the thread that called strop_recipe_run().
 * @param[in] e         The event; borrowed, valid during the call.
 * @param[in] user_data strop_run_options::user_data.
 * @return 0 to go on; non-zero stops the run (STROP_E_CANCELLED).
 * @since 0.1
 */
typedef int (*strop_run_fn)(const strop_run_event *e, void *user_data);

/**
 * @brief Options of strop_recipe_run(); fill with strop_run_options_init(), then change
 *        fields; fields are only ever appended.
 * @since 0.1
 */
typedef struct strop_run_options {
  size_t size;                   /**< sizeof(strop_run_options). */
  int mode;                      /**< strop_run_mode (default finetune). */
  int write_outputs;             /**< 1: write the output section's files (default 1). */
  int baselines;                 /**< 1: run the recipe's baselines (default 1). */
  const strop_model *base_model; /**< Pre-loaded base model to clone instead of reading
                                     model.spec/weights (tuning trials), or NULL. Borrowed. */
  strop_run_fn on_event;         /**< Callback, or NULL. */
  void *user_data;               /**< Passed to on_event. */
  int64_t epochs_cap;            /**< > 0: no stage runs more epochs than this (quick runs). */
  int resume;                    /**< 1: continue from output.checkpoint when it exists, at the
                                     stage and step it was written (as output.resume: true);
                                     the result is the uninterrupted run's, bit for bit.
                                     @since 0.2 */
  strop_dist *dist;              /**< A group (strop_dist_init_mpi()) to run the stages
                                     data-parallel on, or NULL: every rank calls
                                     strop_recipe_run() with the same recipe; data.batch_size
                                     is the global batch; only rank 0 writes outputs and
                                     checkpoints; evaluations are reduced. Borrowed.
                                     @since 0.2 */
} strop_run_options;

/**
 * @brief Fills @p o with the defaults listed in strop_run_options (and its size).
 * @param[out] o The options, or NULL (a no-op).
 * @since 0.1
 */
STROP_API void strop_run_options_init(strop_run_options *o);

/**
 * @brief Runs the recipe: model, surgery, data, stages, evaluation, baselines, outputs.
 *
 * Before any training, the output folder and the folders of the output files are created
 * (with parents) and each is checked to take a file, so a read-only or full folder fails the
 * run at once (STROP_E_IO naming it). With resume (@c o->resume or output.resume), a run
 * continues from output.checkpoint: the stages before the checkpoint's stage apply only their
 * surgery, that stage picks up at the saved step, the later ones run as usual; without a
 * checkpoint file the run starts from the beginning.
 * @param[in]  r   The recipe; only read.
 * @param[in]  o   Options (strop_run_options_init()), or NULL for the defaults; only read
 *                 during the call (o->base_model is borrowed for it).
 * @param[out] out The run's results, owned by the caller (strop_run_free()); also set when a
 *                 stage fails part-way (then partial), NULL only if nothing ran.
 * @return STROP_OK, or the first failure's status with a sentence naming the recipe section:
 *         STROP_E_INVALID_ARG (NULL, an uninitialised @p o); STROP_E_IO (a file cannot be
 *         read, an output folder cannot be created or written); STROP_E_FORMAT (a file or
 *         setting the run reads is malformed; two output keys naming one file; resuming without
 *         output.checkpoint, or from a checkpoint another recipe or stage wrote);
 *         STROP_E_CANCELLED (the event callback
 *         asked to stop); and the statuses of what the recipe asks for — loading the model
 *         and data, surgery, training and evaluation (STROP_E_NOT_FOUND, STROP_E_SHAPE,
 *         STROP_E_STATE, STROP_E_UNSUPPORTED, STROP_E_CALLBACK, STROP_E_NUMERIC) —;
 *         STROP_E_NOMEM.
 * @since 0.1 (resume and the output checks: 0.2)
 */
STROP_API STROP_NODISCARD strop_status strop_recipe_run(const strop_recipe *r,
                                                        const strop_run_options *o,
                                                        strop_run **out);

/** @brief Values of strop_run_info(). @since 0.1 */
typedef enum strop_run_info_key {
  STROP_INFO_TRAIN_SIZE = 0, /**< Training samples. */
  STROP_INFO_VAL_SIZE = 1,   /**< Validation samples. */
  STROP_INFO_TEST_SIZE = 2,  /**< Test samples. */
  STROP_INFO_TRAINABLE = 3,  /**< Trainable parameters at the end. */
  STROP_INFO_TOTAL = 4,      /**< Parameters at the end. */
  STROP_INFO_STAGES = 5,     /**< Stages run (baselines included). */
  STROP_INFO_EPOCHS = 6,     /**< History rows (epochs over all stages). */
  STROP_INFO_BEST_EPOCH = 7, /**< Best epoch (by its monitor) of the last stage that is not
                                   a baseline, as a 0-based index (-1: none); the tool and the
                                   report files show it plus 1. */
  STROP_INFO_CLASSES = 8     /**< Classes (0 for regression). */
} strop_run_info_key;

/**
 * @brief An integer fact about the run.
 * @param[in] run The run.
 * @param[in] key A ::strop_run_info_key.
 * @return The value, or -1 for NULL or an unknown key.
 * @since 0.1
 */
STROP_API int64_t strop_run_info(const strop_run *run, int key);

/**
 * @brief Seconds the run took (training and evaluation).
 * @param[in] run The run.
 * @return The seconds, or NaN for NULL.
 * @since 0.1
 */
STROP_API double strop_run_seconds(const strop_run *run);

/**
 * @brief A stage's (or baseline's) result.
 * @param[in] run   The run.
 * @param[in] stage 0 .. strop_run_info(STROP_INFO_STAGES) - 1.
 * @param[in] key   A ::strop_metric_key of the test evaluation after the stage; 100 + key for
 *                  the validation evaluation.
 * @return The value; NaN when absent or for bad arguments.
 * @since 0.1
 */
STROP_API double strop_run_stage_metric(const strop_run *run, int64_t stage, int key);

/**
 * @brief Name of stage @p stage, snprintf-style.
 * @param[in]  run   The run.
 * @param[in]  stage 0 .. strop_run_info(STROP_INFO_STAGES) - 1.
 * @param[out] buf   Receives the name; may be NULL when @p cap is 0.
 * @param[in]  cap   Bytes available at @p buf.
 * @return The full length, or -1 for NULL, @p stage out of range, or NULL @p buf with
 *         @p cap > 0.
 * @since 0.1
 */
STROP_API int64_t strop_run_stage_name(const strop_run *run, int64_t stage, char *buf,
                                       size_t cap);

/**
 * @brief Whether stage @p stage is a baseline (not part of the fine-tuned model).
 * @param[in] run   The run.
 * @param[in] stage 0 .. strop_run_info(STROP_INFO_STAGES) - 1.
 * @return 1 for a baseline; 0 otherwise, for NULL or out of range.
 * @since 0.1
 */
STROP_API int strop_run_stage_is_baseline(const strop_run *run, int64_t stage);

/**
 * @brief History row @p row (epochs over all stages in order).
 * @param[in] run The run.
 * @param[in] row 0 .. strop_run_info(STROP_INFO_EPOCHS) - 1.
 * @param[in] key 0 stage index, 1 epoch within the stage (0-based, as strop_progress::epoch;
 *                the metrics files and the tool number epochs from 1), 2 train loss, 3 train
 *                accuracy, 4 val loss, 5 val accuracy, 6 learning rate, 7 seconds since the
 *                run began.
 * @return The value; NaN when absent or for bad arguments.
 * @since 0.1
 */
STROP_API double strop_run_history(const strop_run *run, int64_t row, int key);

/**
 * @brief The fine-tuned model.
 * @param[in] run The run.
 * @return The model, borrowed from the run (lives until strop_run_free(); the caller may
 *         use it, e.g. strop_model_clone() it, but not free it), or NULL.
 * @since 0.1
 */
STROP_API strop_model *strop_run_model(strop_run *run);

/**
 * @brief Frees the run and its model.
 * @param[in] run The run, or NULL (a no-op).
 * @since 0.1
 */
STROP_API void strop_run_free(strop_run *run);

/** @brief Which part of a recipe's data strop_recipe_evaluate() uses. @since 0.1 */
typedef enum strop_data_split {
  STROP_SPLIT_TRAIN = 0, /**< The training samples (after few-shot and splits). */
  STROP_SPLIT_VAL = 1,   /**< The validation samples. */
  STROP_SPLIT_TEST = 2   /**< The test samples. */
} strop_data_split;

/**
 * @brief Evaluates @p model on a part of the recipe's data, with the recipe's loss and
 *        deterministic transforms (scale, resize, normalisation).
 * @param[in]     r     The recipe; only read.
 * @param[in,out] model The model (its forward state is used).
 * @param[in]     which A ::strop_data_split.
 * @param[out]    out   The metrics, owned by the caller (strop_metrics_free()); NULL on
 *                      error.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL, unknown split); STROP_E_NOT_FOUND (the recipe
 *         has no such part); the statuses of loading the data (STROP_E_IO, STROP_E_FORMAT,
 *         STROP_E_UNSUPPORTED, STROP_E_CALLBACK) and of strop_trainer_eval() (STROP_E_SHAPE,
 *         STROP_E_INVALID_ARG); STROP_E_NOMEM.
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_recipe_evaluate(const strop_recipe *r,
                                                             strop_model *model, int which,
                                                             strop_metrics **out);

/* ---- tuning a recipe ---- */

struct strop_tuner;

/** @brief What a tuning event is about. Kinds are only added: ignore one you do not know.
 *  @since 0.1 */
typedef enum strop_tune_event_kind {
  STROP_TUNE_EVENT_TRIAL_START = 0, /**< A trial begins (its values are in the tuner). */
  STROP_TUNE_EVENT_EPOCH = 1,       /**< A trial reported its metric after an epoch. */
  STROP_TUNE_EVENT_TRIAL_END = 2,   /**< A trial ended: status and value. */
  STROP_TUNE_EVENT_RESUMED = 3,     /**< Before any trial: the trials file @c path was read;
                                         @c count trials in it are finished (the tuner has them
                                         and those to run again). @since 0.2 */
  STROP_TUNE_EVENT_OUTPUT = 4       /**< After the search: the file @c path that the recipe's
                                         key @c key names was written. @since 0.2 */
} strop_tune_event_kind;

/**
 * @brief An event of strop_recipe_tune(); fields only appended, read those within @c size.
 * @since 0.1
 */
typedef struct strop_tune_event {
  size_t size;                     /**< sizeof(strop_tune_event). */
  int kind;                        /**< strop_tune_event_kind. */
  int64_t trial_id;                /**< The trial (-1 for the events of the whole search). */
  int64_t epoch;                   /**< STROP_TUNE_EVENT_EPOCH: epochs done over all stages. */
  double value;                    /**< The epoch's metric, or the trial's final value (a pruned
                                        trial's: its last reported one). */
  int status;                      /**< STROP_TUNE_EVENT_TRIAL_END: a strop_trial_status. */
  const struct strop_tuner *tuner; /**< The tuner, to read values and the best so far. */
  const char *path;                /**< STROP_TUNE_EVENT_RESUMED, _OUTPUT: the file, as the
                                        recipe's folder resolves it; else NULL. @since 0.2 */
  const char *key;                 /**< STROP_TUNE_EVENT_RESUMED, _OUTPUT: its recipe key
                                        ("tune.trials_file", "tune.best_recipe", "tune.plot");
                                        else NULL. @since 0.2 */
  int64_t count;                   /**< STROP_TUNE_EVENT_RESUMED: the finished trials read.
                                        @since 0.2 */
} strop_tune_event;

/**
 * @brief Receives tuning events; may be called from several threads at once (one per
 *        worker).
 * @param[in] e         The event; borrowed, valid during the call.
 * @param[in] user_data strop_tune_options::user_data.
 * @return 0 to go on; non-zero stops the whole search (STROP_E_CANCELLED).
 * @since 0.1
 */
typedef int (*strop_tune_fn)(const strop_tune_event *e, void *user_data);

/**
 * @brief Options of strop_recipe_tune(); fill with strop_tune_options_init(), then change
 *        fields; fields are only ever appended.
 * @since 0.1
 */
typedef struct strop_tune_options {
  size_t size;            /**< sizeof(strop_tune_options). */
  int64_t trials;         /**< > 0: the search has this many trials in all (those finished in
                              the trials file count) instead of tune.trials. */
  int64_t epochs_cap;     /**< > 0: no stage of a trial runs more epochs than this. */
  int resume;             /**< 1 (default): continue from tune.trials_file when it exists. */
  strop_tune_fn on_event; /**< Callback, or NULL. */
  void *user_data;        /**< Passed to on_event. */
  double time_budget;     /**< > 0: no trial starts after this many seconds (the running ones
                              finish), instead of tune.time_budget. @since 0.2 */
  strop_dist *dist;       /**< A group to spread the trials over, or NULL: every rank calls
                              strop_recipe_tune() with the same recipe and holds the same
                              search; each round, rank r runs the r-th of the next trials (alone,
                              on its own data) and the ranks share the results, so grid and
                              random search find the same best as one process; only rank 0
                              writes the trials file and outputs. Trials are not pruned (their
                              epochs run on other ranks than the pruner's record).
                              Borrowed. @since 0.2 */
} strop_tune_options;

/**
 * @brief Fills @p o with the defaults listed in strop_tune_options (and its size).
 * @param[out] o The options, or NULL (a no-op).
 * @since 0.1
 */
STROP_API void strop_tune_options_init(strop_tune_options *o);

/**
 * @brief Runs the recipe's @c tune: section.
 *
 * It loads the pre-trained model once, and for each trial clones it, sets the trial's values
 * by key path in a copy of the recipe, fine-tunes (no outputs, no baselines), reports the
 * metric after every epoch of the last stage to the pruner (so a trial is judged only once all
 * its settings took effect; earlier stages run in full), and tells the result. Failed trials
 * are recorded and the search goes on. Writes tune.trials_file (one JSON line per trial; a
 * rerun resumes from it, running the trials still missing from tune.trials and, first, those
 * interrupted), tune.best_recipe (the recipe with the best values, runnable by `strop
 * finetune`) and tune.plot (SVG: metric per trial, and metric against the value of each of
 * the first two parameters). A host callback that asks to stop interrupts the running trials
 * (recorded as ::STROP_TRIAL_INTERRUPTED, run again first on resume); asked at a trial's end,
 * it lets that trial's result stand.
 * @param[in]  r   The recipe; only read.
 * @param[in]  o   Options (strop_tune_options_init()), or NULL for the defaults; only read
 *                 during the call.
 * @param[out] out The tuner with every trial, owned by the caller (strop_tuner_free()); NULL
 *                 on error.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL, an uninitialised @p o); STROP_E_FORMAT (no
 *         tune section, a bad parameter key, tune.trials below 1, tune.best_recipe at the path
 *         of another output file, a malformed trials file: the sentence names file:line:col);
 *         STROP_E_IO (an
 *         output or the trials file cannot be written); STROP_E_CANCELLED; the statuses of
 *         loading the model and data (as strop_recipe_run()) and of the tuner
 *         (strop_tuner_ask(): STROP_E_UNSUPPORTED, STROP_E_NUMERIC); STROP_E_NOMEM.
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_recipe_tune(const strop_recipe *r,
                                                         const strop_tune_options *o,
                                                         struct strop_tuner **out);

STROP_END_DECLS

#endif
