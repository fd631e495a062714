/* eopt's version: the one place it is written. The Makefile reads it from here (the shared
 * library's file name and soname, eopt.pc), `eopt --version` prints it, and run records name it. */
#ifndef EOPT_VERSION_H
#define EOPT_VERSION_H

#define EOPT_VERSION "0.1.0"

#endif
