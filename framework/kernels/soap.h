/* Element-wise kernels of the soap family (see ew.h for the calling convention). */
#ifndef EOPT_KERNELS_SOAP_H
#define EOPT_KERNELS_SOAP_H

#define EOPT_EW_SOAP(X)

#endif
