/* A minimal table-driven unit test harness: CHECK records a failure naming the case. */
#ifndef PGTIDE_UNIT_H
#define PGTIDE_UNIT_H

#include <stdio.h>
#include <string.h>

static int unit_failures;
static int unit_checks;

#define CHECK(cond, ...)                                                                           \
	do {                                                                                       \
		unit_checks++;                                                                     \
		if (!(cond)) {                                                                     \
			unit_failures++;                                                           \
			fprintf(stderr, "%s:%d: FAIL (%s): ", __FILE__, __LINE__, #cond);          \
			fprintf(stderr, __VA_ARGS__);                                              \
			fputc('\n', stderr);                                                       \
		}                                                                                  \
	} while (0)

#define CHECK_STR(a, b, ...)                                                                       \
	CHECK(((a) == NULL && (b) == NULL) ||                                                      \
	              ((a) != NULL && (b) != NULL && strcmp((a), (b)) == 0),                       \
	      __VA_ARGS__)

/* Ends main(): prints a summary and returns the exit status automake expects. */
#define UNIT_DONE()                                                                                \
	do {                                                                                       \
		printf("%s: %d checks, %d failed\n", __FILE__, unit_checks, unit_failures);        \
		return unit_failures ? 1 : 0;                                                      \
	} while (0)

#endif
