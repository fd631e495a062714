/* eopt: matrix optimizers (Muon family, SOAP, MOSO) with AdamW, in C. The public API. */
#ifndef EOPT_H
#define EOPT_H

#include "framework/error.h"
#include "framework/log.h"
#include "framework/value.h"
#include "framework/backend.h"
#include "framework/tensor.h"
#include "optimizers/optimizer.h"

#endif
