/* The model configs and deployments shipped with warmcal, by name:
 * `warmcal-synth --model deepseek-v3 --deployment deploy-tp4` instead of
 * their paths. An installed command looks in PREFIX/share/warmcal/models
 * (found relative to itself, wherever PREFIX went), the build tree's in the
 * source tree's data/models. */
#ifndef WARMCAL_SYNTH_SHIPPED_MODELS_H
#define WARMCAL_SYNTH_SHIPPED_MODELS_H

#include <stddef.h>

/* The file `--model arg` names, malloc'd: arg itself when it is a path (it
 * holds a '/', ends in ".json" or names an existing file), else the shipped
 * model arg's config.json. NULL when arg is neither, or out of memory; then
 * why (of size len) says which, listing the shipped models. */
char *warmcal_synth_model_file(const char *arg, char *why, size_t len);

/* The file `--deployment arg` names, malloc'd: arg itself when it is a path
 * (as above), else arg.json in the folder of the model file that `--model
 * model_arg` names (deployments are shipped beside their model). NULL when
 * there is no such file (or model_arg is NULL or names no model), or out of
 * memory; then why says which, listing the deployments in that folder. */
char *warmcal_synth_deployment_file(const char *arg, const char *model_arg, char *why, size_t len);

#endif
