/* The registry of optimizer classes: each family header contributes its list. */
#ifndef EOPT_CLASSES_H
#define EOPT_CLASSES_H

#include "adamw.h"
#include "dion.h"
#include "moso.h"
#include "muon.h"
#include "muown.h"
#include "soap.h"

#define EOPT_OPTIMIZER_CLASSES                                                                              \
    EOPT_CLASSES_MUON EOPT_CLASSES_MUOWN EOPT_CLASSES_ADAMW EOPT_CLASSES_DION EOPT_CLASSES_SOAP EOPT_CLASSES_MOSO

#endif
