/* Element-wise kernels of the adam family (see ew.h for the calling convention). */
#ifndef EOPT_KERNELS_ADAM_H
#define EOPT_KERNELS_ADAM_H

#define EOPT_EW_ADAM(X)

#endif
