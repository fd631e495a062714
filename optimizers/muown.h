/* The muown optimizer family. */
#ifndef EOPT_OPT_MUOWN_H
#define EOPT_OPT_MUOWN_H

#include "optimizer.h"

/* Registry entries, e.g. "&eopt_class_x, &eopt_class_y," (see classes.h). */
#define EOPT_CLASSES_MUOWN

#endif
