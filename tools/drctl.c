/* placeholder */
#include <stdio.h>
int main(void) { puts("drctl"); return 0; }
