/* Built when eopt is compiled without CUDA (make without CUDA=1). */
#include "backend.h"

eopt_status eopt_backend_cuda_create(eopt_backend **out)
{
    *out = NULL;
    return eopt_fail(EOPT_ERR_DEVICE, "device 'cuda' requested, but this eopt was built without CUDA (rebuild with "
                                      "`make CUDA=1`)");
}
