/* Element-wise kernels of the model family (see ew.h for the calling convention). */
#ifndef EOPT_KERNELS_MODEL_H
#define EOPT_KERNELS_MODEL_H

#define EOPT_EW_MODEL(X)

#endif
