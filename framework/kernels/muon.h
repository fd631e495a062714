/* Element-wise kernels of the muon family (see ew.h for the calling convention). */
#ifndef EOPT_KERNELS_MUON_H
#define EOPT_KERNELS_MUON_H

#define EOPT_EW_MUON(X)

#endif
