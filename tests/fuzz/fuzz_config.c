/* libFuzzer target: the configuration parser on arbitrary text (seeded with configs/). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "train/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = 0;
    static eopt_config cfg; /* large: keep it off the stack */
    eopt_config_parse(text, "fuzz.cfg", 0, NULL, &cfg);
    free(text);
    return 0;
}
