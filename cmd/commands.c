/* The commands of `eopt`, in the order `eopt --help` lists them. */
#include "commands.h"

const eopt_command *const eopt_commands[] = {
    &eopt_cmd_train,  &eopt_cmd_study,   &eopt_cmd_report,       &eopt_cmd_metrics,   &eopt_cmd_plot,  &eopt_cmd_describe, &eopt_cmd_inspect,
    &eopt_cmd_replay, &eopt_cmd_verify_model, &eopt_cmd_selfcheck, &eopt_cmd_bench, NULL,
};
