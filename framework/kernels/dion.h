/* Element-wise kernels of the dion family (see ew.h for the calling convention). */
#ifndef EOPT_KERNELS_DION_H
#define EOPT_KERNELS_DION_H

#define EOPT_EW_DION(X)

#endif
