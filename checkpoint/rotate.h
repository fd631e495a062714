/* Never-broken checkpoints on top of checkpoint.h: an all-or-nothing resume, and a directory
 * of rotating checkpoints: `<dir>/<prefix><step>.h5`, the newest `keep` kept.
 * Each file is written atomically by eopt_checkpoint_save, so a crash at any moment leaves
 * every listed file complete; a stale `<name>.tmp` of a killed writer is never a checkpoint
 * and is removed by the next prune. One writer per directory and prefix. */
#ifndef EOPT_ROTATE_H
#define EOPT_ROTATE_H

#include <stddef.h>

#include "checkpoint.h"

/* Saves w as <dir>/<prefix><w->step>.h5 (step zero-padded to 12 digits, so names sort by
 * step), then prunes to the newest `keep` (keep <= 0: keep all). path_out (optional) gets the
 * file written. */
eopt_status eopt_checkpoint_save_rotating(const char *dir, const char *prefix, const eopt_ckpt_write *w, int keep,
                                          char *path_out, size_t size);
/* Deletes all but the newest `keep` checkpoints of dir/prefix, and every stale .tmp. */
eopt_status eopt_checkpoint_prune(const char *dir, const char *prefix, int keep);
/* The newest checkpoint of dir/prefix that opens and validates: each newer file that does not
 * is skipped with a warning (eopt_log) naming it and why. *out is open: close it with
 * eopt_checkpoint_close. EOPT_ERR_IO if the directory holds no checkpoint (or does not exist);
 * EOPT_ERR_FORMAT if it holds some and none opens (the message names the count and the last
 * reason); EOPT_ERR_INTERRUPTED (no older file tried) when eopt_interrupt() stops the check of one. */
eopt_status eopt_checkpoint_open_latest(const char *dir, const char *prefix, const eopt_ckpt_options *opt,
                                        eopt_ckpt **out);

#endif
