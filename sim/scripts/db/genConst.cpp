// genConst.cpp -- InjSigInterval calibration constants (simulated site).
//
// Usage: ./a.out <run_from>
// Reads ../../../InjSigTimeCal/interval.txt (lines "<run> <interval>"), keeps the runs
// >= run_from and writes one constant file InjSigInterval_<first>_<last>.root per group of
// consecutive lines with the same interval. The files are placeholders (no ROOT here).
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

struct Entry {
    long run;
    long interval;
};

static bool writeConst(long first, long last, long interval)
{
    std::ostringstream name;
    name << "InjSigInterval_" << first << "_" << last << ".root";
    std::ofstream out(name.str().c_str(), std::ios::binary);
    if (!out) {
        std::cerr << "ERROR: cannot write " << name.str() << std::endl;
        return false;
    }
    long ms = (interval == 15000000) ? 60 : interval;
    out << "root" << '\0' << '\0' << " InjSigInterval constants\n"
        << "run_from " << first << "\n"
        << "run_to " << last << "\n"
        << "interval " << interval << "\n"
        << "InjSigInterval " << ms << "\n";
    std::cout << "write " << name.str() << std::endl;
    return true;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        std::cerr << "usage: " << argv[0] << " <run_from>" << std::endl;
        return 1;
    }
    char *end = 0;
    long runFrom = std::strtol(argv[1], &end, 10);
    if (end == argv[1] || *end != '\0' || runFrom <= 0) {
        std::cerr << "ERROR: bad run number " << argv[1] << std::endl;
        return 1;
    }
    const char *path = "../../../InjSigTimeCal/interval.txt";
    std::ifstream in(path);
    if (!in) {
        std::cerr << "ERROR: cannot open " << path << std::endl;
        return 1;
    }
    std::vector<Entry> entries;
    std::string line;
    while (std::getline(in, line)) {
        std::istringstream fields(line);
        Entry e;
        if (fields >> e.run >> e.interval && e.run >= runFrom) {
            entries.push_back(e);
        }
    }
    if (entries.empty()) {
        std::cerr << "ERROR: no run >= " << runFrom << " in " << path << std::endl;
        return 1;
    }
    size_t start = 0;
    int files = 0;
    for (size_t i = 1; i <= entries.size(); ++i) {
        if (i == entries.size() || entries[i].interval != entries[start].interval) {
            long lo = entries[start].run;
            long hi = entries[start].run;
            for (size_t k = start; k < i; ++k) {
                if (entries[k].run < lo) lo = entries[k].run;
                if (entries[k].run > hi) hi = entries[k].run;
            }
            if (!writeConst(lo, hi, entries[start].interval)) {
                return 1;
            }
            ++files;
            start = i;
        }
    }
    std::cout << files << " constant file(s) for runs >= " << runFrom << std::endl;
    return 0;
}
