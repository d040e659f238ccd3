// drawcheck.c: three check panels of one run, saved as check<run>.png (ROOT macro).
void drawcheck(int run)
{
    TFile *f = new TFile(Form("hist%05d.root", run));
    TTree *t = (TTree *)f->Get("event");
    TCanvas *c = new TCanvas("c", "c", 1800, 800);
    c->Divide(3, 1);

    c->cd(1);
    t->Draw("evt:ets1", "ets1>80000000 && ets1<120000000");
    TLatex l;
    l.DrawLatexNDC(0.15, 0.92, Form("run%d", run));

    const char *dt = "(ets1-ets2_pre)/2000";
    TString cut = Form("%s>0 && %s<60 && flag_pre!=21 && trigChannel_9==0", dt, dt);

    c->cd(2);
    t->Draw(Form("nhit_TQ_total_mdc:%s", dt), cut + " && ets1>1600000000 && ets1<2000000000");

    c->cd(3);
    t->Draw("run:evt", cut + " && etot_all_emc>200000");

    c->SaveAs(Form("check%d.png", run));
}
